package io.tradeflow.venue;

import java.io.IOException;
import java.io.OutputStream;
import java.math.BigDecimal;
import java.math.RoundingMode;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Deque;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Random;
import java.util.Set;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import quickfix.ConfigError;
import quickfix.FieldNotFound;
import quickfix.Group;
import quickfix.Message;
import quickfix.Session;
import quickfix.SessionID;
import quickfix.SessionNotFound;
import quickfix.SessionSettings;

/**
 * Market data over FIX: a seeded random-walk trade feed per symbol, published as
 * MarketDataIncrementalRefresh (35=X) to the sessions that subscribed with a
 * MarketDataRequest (35=V), each subscription answered first by one
 * MarketDataSnapshotFullRefresh (35=W) per symbol.
 *
 * <p>Every trade has a per-symbol sequence number, RptSeq (83), 1, 2, 3... in each MD
 * entry of both W and X (QuickFIX/J's FIX44.xml has no RptSeq in those groups; the
 * venue is pointed at {@code FIX44-MD.xml}, a copy with it added). A snapshot holds the
 * symbol's last {@code MdSnapshotDepth} trades, oldest first: a subscriber that lost
 * incrementals (a gap in RptSeq, a reconnect) asks again and takes from the snapshot
 * the trades after the last one it has.
 *
 * <p>Settings ([DEFAULT] of the venue's settings file):
 * <ul>
 *   <li>{@code MdSymbols} - comma list; empty or absent: no market data (V is refused).</li>
 *   <li>{@code MdRate} - trades per second over all symbols (default 20).</li>
 *   <li>{@code MdMaxTicks} - stop publishing after this many trades (0: never).</li>
 *   <li>{@code MdSnapshotDepth} - trades per symbol a snapshot carries (default 1000).</li>
 *   <li>{@code MdDropEvery} - test knob: every Nth trade is logged as published but its
 *       incremental is never sent (a gap the subscriber must repair; 0: none).</li>
 *   <li>{@code MdStartOnSubscribe} - Y: publishing starts with the first subscription
 *       (benchmarks: nothing is published before anyone listens; default N).</li>
 *   <li>{@code MdSeed}, {@code MdStartPrice} - the random walk (default 1 and 100).</li>
 *   <li>{@code MdPublishedLogPath} - one JSON line per trade published (default
 *       {@code <FileStorePath>/md-published.jsonl}): {@code seq}, {@code symbol},
 *       {@code price}, {@code size}, {@code ts} (the trade's time, as sent),
 *       {@code published_us} (epoch microseconds when it was handed to the sessions),
 *       {@code sent} (false: dropped by {@code MdDropEvery}).</li>
 * </ul>
 *
 * <p>Trades are generated on their own thread whether or not anyone subscribed; the
 * snapshot and the subscription are taken under the same lock as publishing, so no
 * trade falls between a snapshot and the first incremental.
 */
final class MarketDataPublisher {
    private static final Logger log = LoggerFactory.getLogger(MarketDataPublisher.class);

    static final int MD_REQ_ID = 262;
    static final int SUBSCRIPTION_REQUEST_TYPE = 263;
    static final int NO_MD_ENTRIES = 268;
    static final int MD_ENTRY_TYPE = 269;
    static final int MD_ENTRY_PX = 270;
    static final int MD_ENTRY_SIZE = 271;
    static final int MD_ENTRY_DATE = 272;
    static final int MD_ENTRY_TIME = 273;
    static final int MD_UPDATE_ACTION = 279;
    static final int MD_REQ_REJ_REASON = 281;
    static final int RPT_SEQ = 83;
    static final int NO_RELATED_SYM = 146;
    static final int SYMBOL = 55;
    static final int TEXT = 58;

    private static final DateTimeFormatter DATE = DateTimeFormatter.ofPattern("yyyyMMdd").withZone(ZoneOffset.UTC);
    private static final DateTimeFormatter TIME = DateTimeFormatter.ofPattern("HH:mm:ss.SSS").withZone(ZoneOffset.UTC);

    /** One published trade. */
    private static final class Trade {
        final long seq;
        final String symbol;
        final BigDecimal price;
        final BigDecimal size;
        final Instant ts;

        Trade(long seq, String symbol, BigDecimal price, BigDecimal size, Instant ts) {
            this.seq = seq;
            this.symbol = symbol;
            this.price = price;
            this.size = size;
            this.ts = ts;
        }
    }

    private final List<String> symbols;
    private final double rate;
    private final long maxTicks;
    private final int depth;
    private final int dropEvery;
    private final boolean startOnSubscribe;
    private final java.util.concurrent.CountDownLatch subscribed = new java.util.concurrent.CountDownLatch(1);
    private final Random rnd;
    private final OutputStream out;
    private final Map<String, Long> seqs = new HashMap<>();
    private final Map<String, BigDecimal> prices = new HashMap<>();
    private final Map<String, Deque<Trade>> recent = new HashMap<>();
    /** session -> symbol -> MDReqID of its subscription. */
    private final Map<SessionID, Map<String, String>> subs = new HashMap<>();
    private long published;
    private volatile boolean running;
    private Thread thread;

    private MarketDataPublisher(SessionSettings s) throws ConfigError, IOException {
        this.symbols = new ArrayList<>(VenueConfig.symbols(VenueConfig.get(s, "MdSymbols", "")));
        try {
            this.rate = Double.parseDouble(VenueConfig.get(s, "MdRate", "20").trim());
            this.maxTicks = Long.parseLong(VenueConfig.get(s, "MdMaxTicks", "0").trim());
            this.depth = Math.max(1, Integer.parseInt(VenueConfig.get(s, "MdSnapshotDepth", "1000").trim()));
            this.dropEvery = Math.max(0, Integer.parseInt(VenueConfig.get(s, "MdDropEvery", "0").trim()));
            this.startOnSubscribe = "Y".equalsIgnoreCase(VenueConfig.get(s, "MdStartOnSubscribe", "N").trim());
            this.rnd = new Random(Long.parseLong(VenueConfig.get(s, "MdSeed", "1").trim()));
            BigDecimal start = new BigDecimal(VenueConfig.get(s, "MdStartPrice", "100").trim());
            for (String sym : symbols) {
                prices.put(sym, start);
                seqs.put(sym, 0L);
                recent.put(sym, new ArrayDeque<>());
            }
        } catch (NumberFormatException e) {
            throw new ConfigError("bad market data setting: " + e.getMessage());
        }
        if (rate <= 0) {
            throw new ConfigError("MdRate must be positive");
        }
        Path store = Paths.get(VenueConfig.get(s, "FileStorePath", "store"));
        Path path = Paths.get(VenueConfig.get(s, "MdPublishedLogPath", store.resolve("md-published.jsonl").toString()));
        if (path.getParent() != null) {
            Files.createDirectories(path.getParent());
        }
        this.out = Files.newOutputStream(path, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        log.info("market data: symbols {} at {}/s, snapshot depth {}, drop every {}, max {}, log {}",
                symbols, rate, depth, dropEvery, maxTicks, path);
    }

    /** Return the publisher the settings describe, or null when MdSymbols is empty. */
    static MarketDataPublisher from(SessionSettings settings) throws ConfigError, IOException {
        if (VenueConfig.symbols(VenueConfig.get(settings, "MdSymbols", "")).isEmpty()) {
            return null;
        }
        return new MarketDataPublisher(settings);
    }

    void start() {
        running = true;
        thread = new Thread(this::run, "md-publisher");
        thread.setDaemon(true);
        thread.start();
    }

    void stop() {
        running = false;
        if (thread != null) {
            thread.interrupt();
            try {
                thread.join(2000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        synchronized (this) {
            try {
                out.close();
            } catch (IOException ignored) {
                // closing at shutdown
            }
        }
    }

    private void run() {
        if (startOnSubscribe) {
            try {
                subscribed.await();
            } catch (InterruptedException e) {
                return;
            }
        }
        long t0 = System.nanoTime();
        while (running && (maxTicks <= 0 || published < maxTicks)) {
            long due = (long) ((System.nanoTime() - t0) / 1e9 * rate) + 1;
            if (published >= due) {
                long waitNs = (long) ((published / rate) * 1e9) - (System.nanoTime() - t0);
                try {
                    Thread.sleep(Math.max(0, Math.min(waitNs / 1_000_000, 50)), (int) Math.max(0, waitNs % 1_000_000));
                } catch (InterruptedException e) {
                    return;
                }
                continue;
            }
            synchronized (this) {
                while (published < due && (maxTicks <= 0 || published < maxTicks)) {
                    publishOne();
                }
                try {
                    out.flush();
                } catch (IOException e) {
                    log.error("cannot flush the published log", e);
                }
            }
        }
        log.info("market data: published {} trades; publishing stopped", published);
    }

    /** Make one trade, log it, keep it for snapshots and send it to the subscribers. */
    private void publishOne() {
        String sym = symbols.get(rnd.nextInt(symbols.size()));
        BigDecimal px = prices.get(sym).multiply(BigDecimal.valueOf(Math.exp(rnd.nextGaussian() * 0.001)))
                .setScale(2, RoundingMode.HALF_EVEN).max(new BigDecimal("0.01"));
        prices.put(sym, px);
        BigDecimal size = BigDecimal.valueOf(100L * (1 + rnd.nextInt(10)));
        long seq = seqs.merge(sym, 1L, Long::sum);
        Trade t = new Trade(seq, sym, px, size, Instant.now().truncatedTo(ChronoUnit.MILLIS));
        published++;
        Deque<Trade> window = recent.get(sym);
        window.addLast(t);
        while (window.size() > depth) {
            window.removeFirst();
        }
        boolean sent = dropEvery <= 0 || published % dropEvery != 0;
        Instant handed = Instant.now();
        if (sent) {
            for (Map.Entry<SessionID, Map<String, String>> e : subs.entrySet()) {
                String reqId = e.getValue().get(sym);
                if (reqId != null) {
                    send(incremental(reqId, t), e.getKey());
                }
            }
        }
        long us = handed.getEpochSecond() * 1_000_000L + handed.getNano() / 1000;
        String line = "{\"seq\": " + seq + ", \"symbol\": \"" + sym + "\", \"price\": \"" + px.toPlainString()
                + "\", \"size\": \"" + size.toPlainString() + "\", \"ts\": \"" + t.ts + "\", \"published_us\": "
                + us + ", \"sent\": " + sent + "}\n";
        try {
            out.write(line.getBytes(StandardCharsets.UTF_8));
        } catch (IOException e) {
            throw new IllegalStateException("cannot write the published log", e);
        }
    }

    /** Answer a MarketDataRequest: snapshots, then (263=1) incrementals; 263=2 unsubscribes. */
    synchronized void onRequest(Message msg, SessionID sid) throws FieldNotFound {
        String reqId = msg.getString(MD_REQ_ID);
        char type = msg.getChar(SUBSCRIPTION_REQUEST_TYPE);
        List<String> wanted = new ArrayList<>();
        for (Group g : msg.getGroups(NO_RELATED_SYM)) {
            wanted.add(g.getString(SYMBOL).toUpperCase(Locale.ROOT));
        }
        if (type == '2') {
            Map<String, String> mine = subs.get(sid);
            if (mine != null) {
                mine.values().removeIf(reqId::equals);
            }
            log.info("{}: unsubscribed {}", sid, reqId);
            return;
        }
        for (String sym : wanted) {
            if (!recent.containsKey(sym)) {
                Message rej = new quickfix.fix44.MarketDataRequestReject();
                rej.setString(MD_REQ_ID, reqId);
                rej.setChar(MD_REQ_REJ_REASON, '0'); // unknown symbol
                rej.setString(TEXT, "unknown symbol " + sym);
                send(rej, sid);
                return;
            }
        }
        if (type != '0' && type != '1') {
            Message rej = new quickfix.fix44.MarketDataRequestReject();
            rej.setString(MD_REQ_ID, reqId);
            rej.setString(TEXT, "unsupported SubscriptionRequestType " + type);
            send(rej, sid);
            return;
        }
        for (String sym : wanted) {
            send(snapshot(reqId, sym), sid);
        }
        if (type == '1') {
            Map<String, String> mine = subs.computeIfAbsent(sid, k -> new LinkedHashMap<>());
            for (String sym : wanted) {
                mine.put(sym, reqId);
            }
            subscribed.countDown();
        }
        log.info("{}: {} {} for {}", sid, type == '1' ? "subscribed" : "snapshot", reqId, wanted);
    }

    /** Forget a session's subscriptions (it logged out or was disconnected). */
    synchronized void onLogout(SessionID sid) {
        subs.remove(sid);
    }

    private Message snapshot(String reqId, String sym) {
        Message m = new quickfix.fix44.MarketDataSnapshotFullRefresh();
        m.setString(MD_REQ_ID, reqId);
        m.setString(SYMBOL, sym);
        Deque<Trade> window = recent.get(sym);
        if (window.isEmpty()) {
            m.setInt(NO_MD_ENTRIES, 0);
        }
        for (Trade t : window) {
            Group g = new quickfix.fix44.MarketDataSnapshotFullRefresh.NoMDEntries();
            g.setChar(MD_ENTRY_TYPE, '2'); // trade
            entry(g, t);
            m.addGroup(g);
        }
        return m;
    }

    private static Message incremental(String reqId, Trade t) {
        Message m = new quickfix.fix44.MarketDataIncrementalRefresh();
        m.setString(MD_REQ_ID, reqId);
        Group g = new quickfix.fix44.MarketDataIncrementalRefresh.NoMDEntries();
        g.setChar(MD_UPDATE_ACTION, '0'); // new
        g.setChar(MD_ENTRY_TYPE, '2'); // trade
        g.setString(SYMBOL, t.symbol);
        entry(g, t);
        m.addGroup(g);
        return m;
    }

    private static void entry(Group g, Trade t) {
        g.setString(MD_ENTRY_PX, t.price.toPlainString());
        g.setString(MD_ENTRY_SIZE, t.size.toPlainString());
        g.setString(MD_ENTRY_DATE, DATE.format(t.ts));
        g.setString(MD_ENTRY_TIME, TIME.format(t.ts));
        g.setString(RPT_SEQ, Long.toString(t.seq));
    }

    private static void send(Message m, SessionID sid) {
        try {
            Session.sendToTarget(m, sid);
        } catch (SessionNotFound e) {
            log.warn("session {} gone, market data not sent", sid);
        }
    }
}
