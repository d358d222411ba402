package io.tradeflow.venue;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.math.BigDecimal;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.security.InvalidKeyException;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Instant;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;

/**
 * The venue's REST order API over the same {@link OrderBook} as FIX (orders of API key
 * {@code K} are the book's session {@code REST:K}). See deploy/fix-venue/README.md.
 *
 * <ul>
 *   <li>{@code POST /api/v1/orders}: a new order; idempotent on {@code clientOrderId}
 *       (201 booked, 200 the same order again, never a second one).</li>
 *   <li>{@code DELETE /api/v1/orders/{clientOrderId}}: cancel (200, 404 unknown, 409 not open).</li>
 *   <li>{@code GET /api/v1/orders/{clientOrderId}}: the order and all its executions.</li>
 *   <li>{@code GET /api/v1/executions?after=N&limit=M}: executions numbered above N.</li>
 *   <li>{@code GET /api/v1/stats}: the API's counters (tests read them).</li>
 * </ul>
 *
 * <p>Every request is signed: {@code X-API-Key}, {@code X-Timestamp} (epoch ms) and
 * {@code X-Signature} = hex HMAC-SHA256 of {@code timestamp\nMETHOD\npath?query\nbody}
 * with the key's secret; anything else is answered 401. Above the rate limit a 429 with
 * {@code Retry-After}. Executions are written to the {@link ExecutionLog} first, then to
 * the order journal, then answered and pushed on the {@link UserStream}.
 */
final class RestApi {
    private static final Logger log = LoggerFactory.getLogger(RestApi.class);
    private static final int MAX_BODY = 64 * 1024;

    final RestConfig config;
    private final VenueConfig venue;
    private final OrderBook book;
    private final AuditLog audit;
    private final ExecutionLog executions;
    /** Order changes, execution numbering and stream pushes happen under this lock, in order. */
    final Object lock = new Object();
    private final Map<String, double[]> buckets = new HashMap<>();
    /** Per key: from when until when a request means the client ignored its Retry-After. */
    private final Map<String, long[]> backoffUntil = new HashMap<>();
    private static final long BACKOFF_GRACE_NS = 250_000_000L;
    private final Map<String, AtomicLong> stats = new HashMap<>();
    private HttpServer server;
    private ExecutorService pool;
    private UserStream stream;

    RestApi(RestConfig config, VenueConfig venue, OrderBook book, AuditLog audit) throws IOException {
        this.config = config;
        this.venue = venue;
        this.book = book;
        this.audit = audit;
        this.executions = new ExecutionLog(config.executionLogPath);
        repair();
        finishCutOff();
    }

    String session() {
        return "REST:" + config.apiKey;
    }

    /** Apply executions logged before a kill that the order journal does not have yet. */
    private void repair() {
        int repaired = 0;
        for (JsonObject e : executions.all(config.apiKey)) {
            String clOrdId = e.get("clientOrderId").getAsString();
            VenueOrder o = book.get(session(), clOrdId);
            String execId = e.get("execId").getAsString();
            int n = Integer.parseInt(execId.substring(execId.lastIndexOf('-') + 1));
            if (o == null) { // killed between the execution log and the journal: book it as logged
                o = new VenueOrder(session(), clOrdId, e.get("orderId").getAsString(),
                        e.get("symbol").getAsString(), "BUY".equals(e.get("side").getAsString()) ? '1' : '2',
                        "LIMIT".equals(str(e, "type")) ? '2' : '1', new BigDecimal(e.get("qty").getAsString()),
                        dec(e, "price"), str(e, "timeInForce"), str(e, "account"));
            } else if (o.execSeq >= n) {
                continue;
            }
            o.execSeq = n;
            o.status = statusChar(e.get("status").getAsString());
            BigDecimal lastQty = new BigDecimal(e.get("lastQty").getAsString());
            if (lastQty.signum() > 0) {
                o.notional = o.notional.add(lastQty.multiply(new BigDecimal(e.get("lastPx").getAsString())));
            }
            o.cumQty = new BigDecimal(e.get("cumQty").getAsString());
            o.leavesQty = new BigDecimal(e.get("leavesQty").getAsString());
            o.avgPx = new BigDecimal(e.get("avgPx").getAsString());
            book.save(o);
            repaired++;
        }
        log.info("REST API: {} orders repaired from the execution log", repaired);
    }

    /**
     * Fill the rest of each order whose fills a kill cut off. A new order on a symbol that
     * does not rest is filled in its slices while its POST is answered; killed between two
     * slices, it would stay open forever, which no venue that took it would do: the
     * remaining slices are numbered now, and a client finds them by gap recovery or a
     * status query.
     */
    private void finishCutOff() {
        String session = session();
        int finished = 0;
        for (VenueOrder o : book.all()) {
            if (!o.session.equals(session) || !o.isOpen() || venue.rests(o.symbol)) {
                continue;
            }
            BigDecimal px = venue.fillPrice(o.ordType, o.price);
            BigDecimal through = BigDecimal.ZERO; // the slices' running total
            for (BigDecimal slice : VenueApplication.slices(o.orderQty, venue.partialFills)) {
                through = through.add(slice);
                if (through.compareTo(o.cumQty) > 0) { // this slice was not filled before the kill
                    BigDecimal qty = through.subtract(o.cumQty);
                    o.fill(qty, px);
                    record(o, "TRADE", qty, px);
                }
            }
            finished++;
        }
        log.info("REST API: {} orders cut off by a kill filled the rest of the way", finished);
    }

    void start() throws IOException {
        server = HttpServer.create(new InetSocketAddress(config.bindAddress, config.httpPort), 128);
        pool = Executors.newFixedThreadPool(8);
        server.setExecutor(pool);
        server.createContext("/api/v1/", this::handle);
        stream = new UserStream(config, this);
        stream.start();
        server.start();
        log.info("REST API on http://{}:{}/api/v1, user stream on ws://{}:{}/api/v1/stream",
                config.bindAddress, config.httpPort, config.bindAddress, config.wsPort);
    }

    void stop() {
        if (server != null) {
            server.stop(0);
            pool.shutdownNow();
        }
        if (stream != null) {
            try {
                stream.stop(1000);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
        }
        executions.close();
    }

    long lastSeq() {
        return executions.lastSeq(config.apiKey);
    }

    private void count(String name) {
        synchronized (stats) {
            stats.computeIfAbsent(name, k -> new AtomicLong()).incrementAndGet();
        }
    }

    // ------------------------------------------------------------------ auth and limits

    /** Hex HMAC-SHA256 of {@code ts\nMETHOD\npathAndQuery\nbody}. */
    static String sign(byte[] secret, String ts, String method, String pathAndQuery, String body) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(secret, "HmacSHA256"));
            byte[] sig = mac.doFinal((ts + "\n" + method + "\n" + pathAndQuery + "\n" + body)
                    .getBytes(StandardCharsets.UTF_8));
            StringBuilder sb = new StringBuilder();
            for (byte b : sig) {
                sb.append(String.format("%02x", b));
            }
            return sb.toString();
        } catch (NoSuchAlgorithmException | InvalidKeyException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The reason a request is not authentic, or null if it is. */
    String refuse(String key, String ts, String sig, String method, String pathAndQuery, String body) {
        if (key == null || ts == null || sig == null) {
            return "missing X-API-Key, X-Timestamp or X-Signature";
        }
        if (!config.apiKey.equals(key)) {
            return "unknown API key";
        }
        long t;
        try {
            t = Long.parseLong(ts.trim());
        } catch (NumberFormatException e) {
            return "bad X-Timestamp";
        }
        if (Math.abs(System.currentTimeMillis() - t) > config.recvWindowMs) {
            return "X-Timestamp outside the receive window";
        }
        String want = sign(config.secret, ts, method, pathAndQuery, body);
        if (!MessageDigest.isEqual(want.getBytes(StandardCharsets.UTF_8),
                sig.toLowerCase(Locale.ROOT).getBytes(StandardCharsets.UTF_8))) {
            return "bad signature";
        }
        return null;
    }

    /** Take a token of the key's bucket; false: over the limit (429). */
    private boolean admit(String key) {
        if (config.rateLimit <= 0) {
            return true;
        }
        synchronized (buckets) {
            long now = System.nanoTime();
            long[] window = backoffUntil.get(key);
            if (window != null && now >= window[0] && now < window[1]) {
                count("requests_during_backoff"); // sent after the client had its 429
            }
            double[] b = buckets.computeIfAbsent(key, k -> new double[] {config.rateBurst, now});
            b[0] = Math.min(config.rateBurst, b[0] + (now - b[1]) / 1e9 * config.rateLimit);
            b[1] = now;
            if (b[0] >= 1) {
                b[0] -= 1;
                return true;
            }
            // requests already in flight when the 429 goes out arrive within the grace
            backoffUntil.put(key, new long[] {now + BACKOFF_GRACE_NS,
                    now + TimeUnit.SECONDS.toNanos(config.retryAfterS) - 50_000_000L});
            return false;
        }
    }

    // ------------------------------------------------------------------ HTTP

    private void handle(HttpExchange ex) throws IOException {
        try {
            String body;
            try (InputStream in = ex.getRequestBody()) {
                byte[] raw = in.readNBytes(MAX_BODY + 1);
                if (raw.length > MAX_BODY) {
                    reply(ex, 413, error("body too large"));
                    return;
                }
                body = new String(raw, StandardCharsets.UTF_8);
            }
            String method = ex.getRequestMethod().toUpperCase(Locale.ROOT);
            String rawPath = ex.getRequestURI().getRawPath();
            String query = ex.getRequestURI().getRawQuery();
            String pathAndQuery = query == null ? rawPath : rawPath + "?" + query;
            String key = ex.getRequestHeaders().getFirst("X-API-Key");
            String why = refuse(key, ex.getRequestHeaders().getFirst("X-Timestamp"),
                    ex.getRequestHeaders().getFirst("X-Signature"), method, pathAndQuery, body);
            if (why != null) {
                count("unauthorized");
                log.warn("REST {} {} refused: {}", method, pathAndQuery, why);
                reply(ex, 401, error(why));
                return;
            }
            if (!admit(key)) {
                count("rate_limited");
                ex.getResponseHeaders().set("Retry-After", Integer.toString(config.retryAfterS));
                reply(ex, 429, error("rate limit of " + config.rateLimit + " requests/s exceeded"));
                return;
            }
            count("requests");
            route(ex, method, rawPath, query, body);
        } catch (RuntimeException e) {
            log.error("REST request failed", e);
            reply(ex, 500, error("internal error: " + e));
        } finally {
            ex.close();
        }
    }

    private void route(HttpExchange ex, String method, String path, String query, String body) throws IOException {
        String orders = "/api/v1/orders";
        if (path.equals(orders) && method.equals("POST")) {
            JsonObject req;
            try {
                req = JsonParser.parseString(body).getAsJsonObject();
            } catch (RuntimeException e) {
                reply(ex, 400, error("body is not a JSON object"));
                return;
            }
            newOrder(ex, req);
        } else if (path.startsWith(orders + "/") && path.length() > orders.length() + 1) {
            String id = URLDecoder.decode(path.substring(orders.length() + 1), StandardCharsets.UTF_8);
            if (method.equals("GET")) {
                orderStatus(ex, id);
            } else if (method.equals("DELETE")) {
                cancel(ex, id);
            } else {
                reply(ex, 405, error("GET or DELETE"));
            }
        } else if (path.equals("/api/v1/executions") && method.equals("GET")) {
            Map<String, String> q = query(query);
            long after;
            int limit;
            try {
                after = Long.parseLong(q.getOrDefault("after", "0"));
                limit = Math.min(1000, Integer.parseInt(q.getOrDefault("limit", "500")));
            } catch (NumberFormatException e) {
                reply(ex, 400, error("after and limit are integers"));
                return;
            }
            JsonObject out = new JsonObject();
            out.add("executions", array(executions.after(config.apiKey, after, limit)));
            out.addProperty("lastSeq", executions.lastSeq(config.apiKey));
            reply(ex, 200, out);
        } else if (path.equals("/api/v1/stats") && method.equals("GET")) {
            JsonObject out = new JsonObject();
            synchronized (stats) {
                stats.forEach((k, v) -> out.addProperty(k, v.get()));
            }
            out.addProperty("last_seq", executions.lastSeq(config.apiKey));
            out.addProperty("stream_clients", stream.clients());
            reply(ex, 200, out);
        } else {
            reply(ex, 404, error("no such endpoint: " + ex.getRequestMethod() + " " + path));
        }
    }

    // ------------------------------------------------------------------ orders

    private void newOrder(HttpExchange ex, JsonObject req) throws IOException {
        String clOrdId = str(req, "clientOrderId");
        String symbol = str(req, "symbol");
        String sideName = str(req, "side");
        String typeName = str(req, "type");
        BigDecimal qty = dec(req, "qty");
        BigDecimal price = dec(req, "price");
        if (clOrdId == null || clOrdId.isEmpty() || clOrdId.length() > 64 || symbol == null || symbol.isEmpty()
                || !("BUY".equals(sideName) || "SELL".equals(sideName))) {
            reply(ex, 400, error("clientOrderId (1-64 chars), symbol and side (BUY or SELL) are required"));
            return;
        }
        if (typeName == null) {
            typeName = "MARKET";
        }
        char side = "BUY".equals(sideName) ? '1' : '2';
        char ordType = "LIMIT".equals(typeName) ? '2' : "MARKET".equals(typeName) ? '1' : '?';
        List<JsonObject> produced = new java.util.ArrayList<>();
        VenueOrder order;
        boolean created;
        synchronized (lock) {
            VenueOrder known = book.get(session(), clOrdId);
            Map<String, Object> a = AuditLog.orderEntry(session(), null, clOrdId, symbol, side, ordType, qty, price,
                    false, false);
            a.put("api", "rest");
            if (known != null) {
                a.put("order_id", known.orderId);
                a.put("outcome", "IDEMPOTENT_REPLAY");
                a.put("reason", "known clientOrderId, status " + VenueOrder.statusName(known.status));
                audit.write(a);
                order = known;
                created = false;
            } else {
                order = new VenueOrder(session(), clOrdId, book.nextOrderId(), symbol, side, ordType,
                        qty == null ? BigDecimal.ZERO : qty, price, str(req, "timeInForce"), str(req, "account"));
                created = true;
                a.put("order_id", order.orderId);
                String why = check(symbol, qty, ordType, price);
                if (why != null) {
                    order.reject(why.startsWith("symbol") ? VenueApplication.REJ_UNKNOWN_SYMBOL
                            : VenueApplication.REJ_OTHER, why);
                    produced.add(record(order, "REJECTED", null, null));
                    a.put("outcome", "REJECTED");
                    a.put("reason", why);
                    audit.write(a);
                } else {
                    produced.add(record(order, "NEW", null, null));
                    a.put("accepted", true);
                    a.put("outcome", "NEW");
                    audit.write(a);
                    if (!venue.rests(symbol)) {
                        BigDecimal px = venue.fillPrice(ordType, price);
                        for (BigDecimal slice : VenueApplication.slices(order.orderQty, venue.partialFills)) {
                            order.fill(slice, px);
                            produced.add(record(order, "TRADE", slice, px));
                        }
                    }
                }
                if (!config.delays(symbol)) {
                    push(produced);
                }
            }
        }
        if (created && config.delays(symbol)) {
            sleep(config.delayMs);
            synchronized (lock) {
                push(produced);
            }
        }
        JsonObject out = new JsonObject();
        out.add("order", orderJson(order));
        out.add("executions", array(created ? produced : executions.ofOrder(config.apiKey, clOrdId)));
        reply(ex, created ? 201 : 200, out);
    }

    private String check(String symbol, BigDecimal qty, char ordType, BigDecimal price) {
        if (venue.rejects(symbol)) {
            return "symbol " + symbol + " is not traded";
        } else if (qty == null || qty.signum() <= 0) {
            return "qty must be positive";
        } else if (qty.compareTo(venue.maxOrderQty) > 0) {
            return "qty " + qty.toPlainString() + " exceeds the maximum " + venue.maxOrderQty.toPlainString();
        } else if (ordType == '?') {
            return "type must be MARKET or LIMIT";
        } else if (ordType == '2' && (price == null || price.signum() <= 0)) {
            return "a LIMIT order needs a positive price";
        }
        return null;
    }

    /** Number an execution of the order's current state: execution log first, then the journal. */
    private JsonObject record(VenueOrder o, String execType, BigDecimal lastQty, BigDecimal lastPx) {
        String execId = o.nextExecId();
        JsonObject e = new JsonObject();
        e.addProperty("execId", execId);
        e.addProperty("clientOrderId", o.clOrdId);
        e.addProperty("orderId", o.orderId);
        e.addProperty("execType", execType);
        e.addProperty("status", VenueOrder.statusName(o.status));
        e.addProperty("symbol", o.symbol);
        e.addProperty("side", o.side == '1' ? "BUY" : "SELL");
        if (o.account != null) e.addProperty("account", o.account);
        e.addProperty("qty", VenueApplication.plain(o.orderQty));
        e.addProperty("type", o.ordType == '2' ? "LIMIT" : "MARKET");
        if (o.price != null) e.addProperty("price", o.price.toPlainString());
        if (o.timeInForce != null) e.addProperty("timeInForce", o.timeInForce);
        e.addProperty("lastQty", lastQty == null ? "0" : VenueApplication.plain(lastQty));
        e.addProperty("lastPx", lastPx == null ? "0" : VenueApplication.plain(lastPx));
        e.addProperty("cumQty", VenueApplication.plain(o.cumQty));
        e.addProperty("leavesQty", VenueApplication.plain(o.leavesQty));
        e.addProperty("avgPx", VenueApplication.plain(o.avgPx));
        if (o.text != null) e.addProperty("reason", o.text);
        e.addProperty("ts", Instant.now().toString());
        executions.append(config.apiKey, e);
        book.save(o);
        return e;
    }

    private void push(List<JsonObject> produced) {
        for (JsonObject e : produced) {
            JsonObject msg = e.deepCopy();
            msg.addProperty("type", "execution");
            stream.push(config.apiKey, msg.toString());
        }
    }

    private void orderStatus(HttpExchange ex, String clOrdId) throws IOException {
        VenueOrder o = book.get(session(), clOrdId);
        if (o == null) {
            reply(ex, 404, error("unknown order " + clOrdId));
            return;
        }
        JsonObject out = new JsonObject();
        synchronized (lock) {
            out.add("order", orderJson(o));
            out.add("executions", array(executions.ofOrder(config.apiKey, clOrdId)));
        }
        reply(ex, 200, out);
    }

    private void cancel(HttpExchange ex, String clOrdId) throws IOException {
        JsonObject out = new JsonObject();
        int code;
        synchronized (lock) {
            VenueOrder o = book.get(session(), clOrdId);
            if (o == null) {
                reply(ex, 404, error("unknown order " + clOrdId));
                return;
            }
            if (!o.isOpen()) {
                code = 409;
                out.addProperty("error", "too late to cancel: order is " + VenueOrder.statusName(o.status));
                out.add("executions", new JsonArray());
            } else {
                o.cancel("REST");
                o.text = "canceled on request";
                List<JsonObject> produced = List.of(record(o, "CANCELED", null, null));
                push(produced);
                out.add("executions", array(produced));
                code = 200;
            }
            out.add("order", orderJson(o));
        }
        reply(ex, code, out);
    }

    private static JsonObject orderJson(VenueOrder o) {
        JsonObject j = new JsonObject();
        j.addProperty("clientOrderId", o.clOrdId);
        j.addProperty("orderId", o.orderId);
        j.addProperty("symbol", o.symbol);
        j.addProperty("side", o.side == '1' ? "BUY" : "SELL");
        j.addProperty("type", o.ordType == '2' ? "LIMIT" : "MARKET");
        j.addProperty("qty", VenueApplication.plain(o.orderQty));
        if (o.price != null) j.addProperty("price", o.price.toPlainString());
        if (o.account != null) j.addProperty("account", o.account);
        j.addProperty("status", VenueOrder.statusName(o.status));
        j.addProperty("cumQty", VenueApplication.plain(o.cumQty));
        j.addProperty("leavesQty", VenueApplication.plain(o.leavesQty));
        j.addProperty("avgPx", VenueApplication.plain(o.avgPx));
        if (o.text != null) j.addProperty("reason", o.text);
        return j;
    }

    private static char statusChar(String name) {
        switch (name) {
            case "NEW": return VenueOrder.NEW;
            case "PARTIALLY_FILLED": return VenueOrder.PARTIALLY_FILLED;
            case "FILLED": return VenueOrder.FILLED;
            case "CANCELED": return VenueOrder.CANCELED;
            default: return VenueOrder.REJECTED;
        }
    }

    // ------------------------------------------------------------------ helpers

    private static JsonArray array(List<JsonObject> items) {
        JsonArray a = new JsonArray();
        items.forEach(a::add);
        return a;
    }

    private static JsonObject error(String why) {
        JsonObject j = new JsonObject();
        j.addProperty("error", why);
        return j;
    }

    private static String str(JsonObject o, String name) {
        JsonElement e = o.get(name);
        return e == null || e.isJsonNull() || !e.isJsonPrimitive() ? null : e.getAsString();
    }

    private static BigDecimal dec(JsonObject o, String name) {
        String s = str(o, name);
        if (s == null) return null;
        try {
            return new BigDecimal(s.trim());
        } catch (NumberFormatException e) {
            return null;
        }
    }

    private static Map<String, String> query(String raw) {
        Map<String, String> out = new HashMap<>();
        if (raw == null) return out;
        for (String part : raw.split("&")) {
            int eq = part.indexOf('=');
            if (eq > 0) {
                out.put(URLDecoder.decode(part.substring(0, eq), StandardCharsets.UTF_8),
                        URLDecoder.decode(part.substring(eq + 1), StandardCharsets.UTF_8));
            }
        }
        return out;
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private static void reply(HttpExchange ex, int code, JsonObject body) throws IOException {
        byte[] bytes = body.toString().getBytes(StandardCharsets.UTF_8);
        ex.getResponseHeaders().set("Content-Type", "application/json");
        ex.sendResponseHeaders(code, bytes.length);
        try (OutputStream out = ex.getResponseBody()) {
            out.write(bytes);
        }
    }
}
