package io.tradeflow.venue;

import java.net.InetSocketAddress;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;

import org.java_websocket.WebSocket;
import org.java_websocket.exceptions.WebsocketNotConnectedException;
import org.java_websocket.handshake.ClientHandshake;
import org.java_websocket.server.WebSocketServer;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import com.google.gson.JsonObject;

/**
 * The user stream: {@code ws://host:RestWsPort/api/v1/stream}, signed like a REST GET of
 * that path with an empty body (the same three headers on the upgrade request). A bad
 * signature closes the connection at once with code 1008.
 *
 * <p>On connect the client gets {@code {"type":"hello","lastSeq":N}}, then every new
 * execution of its API key as {@code {"type":"execution","seq":...}}. Numbers are
 * contiguous; a client that sees a gap (or reconnects) fetches what it missed with
 * {@code GET /api/v1/executions?after=<last seq it has>}.
 */
final class UserStream extends WebSocketServer {
    private static final Logger log = LoggerFactory.getLogger(UserStream.class);
    static final String PATH = "/api/v1/stream";

    private final RestConfig config;
    private final RestApi api;
    private final Map<String, Set<WebSocket>> clients = new ConcurrentHashMap<>();

    UserStream(RestConfig config, RestApi api) {
        super(new InetSocketAddress(config.bindAddress, config.wsPort));
        this.config = config;
        this.api = api;
        setReuseAddr(true);
        setConnectionLostTimeout(30);
    }

    int clients() {
        return clients.values().stream().mapToInt(Set::size).sum();
    }

    @Override
    public void onOpen(WebSocket conn, ClientHandshake handshake) {
        String path = handshake.getResourceDescriptor();
        String key = handshake.getFieldValue("X-API-Key");
        String why = path.equals(PATH) ? api.refuse(key, handshake.getFieldValue("X-Timestamp"),
                handshake.getFieldValue("X-Signature"), "GET", path, "") : "no such stream " + path;
        if (why != null) {
            log.warn("user stream refused from {}: {}", conn.getRemoteSocketAddress(), why);
            conn.close(1008, why);
            return;
        }
        conn.setAttachment(key);
        synchronized (api.lock) { // registered and told lastSeq before any newer execution is pushed
            clients.computeIfAbsent(key, k -> ConcurrentHashMap.newKeySet()).add(conn);
            JsonObject hello = new JsonObject();
            hello.addProperty("type", "hello");
            hello.addProperty("lastSeq", api.lastSeq());
            conn.send(hello.toString());
        }
        log.info("user stream client {} for {}", conn.getRemoteSocketAddress(), key);
    }

    void push(String key, String text) {
        for (WebSocket conn : clients.getOrDefault(key, Set.of())) {
            try {
                conn.send(text);
            } catch (WebsocketNotConnectedException e) {
                // gone: onClose removes it; the client recovers the gap by REST
            }
        }
    }

    @Override
    public void onClose(WebSocket conn, int code, String reason, boolean remote) {
        Object key = conn.getAttachment();
        if (key != null) {
            Set<WebSocket> set = clients.get(key.toString());
            if (set != null) {
                set.remove(conn);
            }
        }
    }

    @Override
    public void onMessage(WebSocket conn, String message) {
        // the stream is one way; pings are handled by the library
    }

    @Override
    public void onError(WebSocket conn, Exception ex) {
        log.warn("user stream error ({}): {}", conn == null ? "server" : conn.getRemoteSocketAddress(), ex.toString());
    }

    @Override
    public void onStart() {
        log.info("user stream listening on {}:{}", config.bindAddress, config.wsPort);
    }
}
