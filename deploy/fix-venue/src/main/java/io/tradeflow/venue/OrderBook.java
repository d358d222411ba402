package io.tradeflow.venue;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The venue's orders, keyed by (session, ClOrdID), kept in an append-only journal.
 *
 * <p>Every change is written as a full snapshot line before the matching FIX message is
 * sent (write-ahead), so after a kill and restart the venue knows every order it ever
 * accepted, in the state it last reported or was about to report, and never fills it again.
 * A torn last line (killed mid-write) is ignored on replay.
 *
 * <p>Line format: {@code H} (journal header, holds the instance id used in OrderIDs) or
 * {@code O} (order snapshot), then tab-separated {@code key=value} fields with backslash
 * escapes for tab, newline and backslash.
 */
final class OrderBook {
    private static final Logger log = LoggerFactory.getLogger(OrderBook.class);

    private final Path path;
    private final Map<String, VenueOrder> orders = new LinkedHashMap<>();
    private final OutputStream out;
    private final String instanceId;
    private long orderCounter;

    OrderBook(Path path) throws IOException {
        this.path = path;
        if (path.getParent() != null) {
            Files.createDirectories(path.getParent());
        }
        String instance = null;
        int torn = 0;
        if (Files.exists(path)) {
            List<String> lines = Files.readAllLines(path, StandardCharsets.UTF_8);
            for (String line : lines) {
                if (line.isEmpty()) {
                    continue;
                }
                try {
                    Map<String, String> f = decode(line);
                    if (line.startsWith("H\t")) {
                        instance = f.get("instance");
                    } else if (line.startsWith("O\t")) {
                        VenueOrder o = VenueOrder.fromFields(f);
                        orders.put(key(o.session, o.clOrdId), o);
                    }
                } catch (RuntimeException e) {
                    torn++;
                }
            }
        }
        boolean fresh = instance == null;
        if (fresh) {
            instance = Long.toString(System.currentTimeMillis(), 36).toUpperCase();
        }
        this.instanceId = instance;
        long maxCounter = 0;
        for (VenueOrder o : orders.values()) {
            int dash = o.orderId.lastIndexOf('-');
            if (o.orderId.startsWith(instance + "-") && dash > 0) {
                maxCounter = Math.max(maxCounter, Long.parseLong(o.orderId.substring(dash + 1)));
            }
        }
        this.orderCounter = Math.max(maxCounter, orders.size());
        this.out = Files.newOutputStream(path, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        if (fresh) {
            Map<String, String> h = new LinkedHashMap<>();
            h.put("instance", instanceId);
            write("H", h);
        } else if (endsTorn(path)) {
            // a torn last line must not swallow the next record
            out.write('\n');
            out.flush();
        }
        log.info("order journal {}: {} orders replayed (instance {}, {} unreadable lines)",
                path, orders.size(), instanceId, torn);
    }

    private static boolean endsTorn(Path path) throws IOException {
        try (java.io.RandomAccessFile f = new java.io.RandomAccessFile(path.toFile(), "r")) {
            if (f.length() == 0) {
                return false;
            }
            f.seek(f.length() - 1);
            return f.read() != '\n';
        }
    }

    static String key(String session, String clOrdId) {
        return session + "\u0001" + clOrdId;
    }

    synchronized VenueOrder get(String session, String clOrdId) {
        return orders.get(key(session, clOrdId));
    }

    synchronized Collection<VenueOrder> all() {
        return List.copyOf(orders.values());
    }

    /** A new venue OrderID: journal instance id (unique per journal) plus a counter. */
    synchronized String nextOrderId() {
        orderCounter += 1;
        return instanceId + "-" + orderCounter;
    }

    private void reserve(String orderId) {
        int dash = orderId.lastIndexOf('-');
        if (orderId.startsWith(instanceId + "-") && dash > 0) {
            try {
                orderCounter = Math.max(orderCounter, Long.parseLong(orderId.substring(dash + 1)));
            } catch (NumberFormatException ignored) {
                // not one of ours
            }
        }
    }

    String instanceId() {
        return instanceId;
    }

    /** Record the order's current state (insert or update) durably before it is reported. */
    synchronized void save(VenueOrder order) {
        orders.put(key(order.session, order.clOrdId), order);
        reserve(order.orderId); // an order restored from another log (RestApi) keeps its id unique
        try {
            write("O", order.toFields());
        } catch (IOException e) {
            throw new IllegalStateException("cannot write order journal " + path, e);
        }
    }

    private void write(String kind, Map<String, String> fields) throws IOException {
        StringBuilder sb = new StringBuilder(kind);
        for (Map.Entry<String, String> e : fields.entrySet()) {
            sb.append('\t').append(e.getKey()).append('=').append(escape(e.getValue()));
        }
        sb.append("\tend=1\n"); // a line without the end marker is torn
        out.write(sb.toString().getBytes(StandardCharsets.UTF_8));
        out.flush();
    }

    synchronized void close() {
        try {
            out.close();
        } catch (IOException e) {
            log.warn("closing journal", e);
        }
    }

    private static String escape(String v) {
        StringBuilder sb = new StringBuilder(v.length());
        for (char c : v.toCharArray()) {
            switch (c) {
                case '\\': sb.append("\\\\"); break;
                case '\t': sb.append("\\t"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                default: sb.append(c);
            }
        }
        return sb.toString();
    }

    private static String unescape(String v) {
        StringBuilder sb = new StringBuilder(v.length());
        for (int i = 0; i < v.length(); i++) {
            char c = v.charAt(i);
            if (c == '\\' && i + 1 < v.length()) {
                char n = v.charAt(++i);
                sb.append(n == 't' ? '\t' : n == 'n' ? '\n' : n == 'r' ? '\r' : n);
            } else {
                sb.append(c);
            }
        }
        return sb.toString();
    }

    private static Map<String, String> decode(String line) {
        String[] parts = line.split("\t");
        if (parts.length < 2 || !(parts[0].equals("H") || parts[0].equals("O"))) {
            throw new IllegalArgumentException("not a journal line");
        }
        if (!parts[parts.length - 1].equals("end=1")) {
            throw new IllegalArgumentException("torn line");
        }
        Map<String, String> m = new HashMap<>();
        for (int i = 1; i < parts.length - 1; i++) {
            int eq = parts[i].indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException("bad field " + parts[i]);
            }
            m.put(parts[i].substring(0, eq), unescape(parts[i].substring(eq + 1)));
        }
        return m;
    }
}
