package io.tradeflow.venue;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import com.google.gson.JsonObject;
import com.google.gson.JsonParser;

/**
 * The executions of the REST API, numbered per API key from 1 with no gap, in an
 * append-only JSON-lines file (one execution per line, flushed before it is answered
 * or pushed on the user stream).
 *
 * <p>It is what a client's gap recovery reads ({@code GET /api/v1/executions?after=N}) and,
 * after a kill, what the order book is repaired from: an execution logged but not yet in
 * the order journal is applied to its order at start ({@link RestApi}). A torn last line
 * is ignored on replay.
 */
final class ExecutionLog {
    private static final Logger log = LoggerFactory.getLogger(ExecutionLog.class);

    private final Map<String, List<JsonObject>> byKey = new HashMap<>();
    private final Map<String, List<JsonObject>> byOrder = new HashMap<>();
    private final OutputStream out;

    ExecutionLog(Path path) throws IOException {
        if (path.getParent() != null) {
            Files.createDirectories(path.getParent());
        }
        int torn = 0;
        int read = 0;
        boolean endsTorn = false;
        if (Files.exists(path)) {
            String text = Files.readString(path, StandardCharsets.UTF_8);
            endsTorn = !text.isEmpty() && !text.endsWith("\n");
            for (String line : text.split("\n")) {
                if (line.isBlank()) {
                    continue;
                }
                try {
                    JsonObject e = JsonParser.parseString(line).getAsJsonObject();
                    String key = e.get("apiKey").getAsString();
                    long seq = e.get("seq").getAsLong();
                    List<JsonObject> list = byKey.computeIfAbsent(key, k -> new ArrayList<>());
                    if (seq != list.size() + 1) {
                        throw new IllegalStateException("execution " + seq + " out of order");
                    }
                    list.add(e);
                    byOrder.computeIfAbsent(orderKey(key, e.get("clientOrderId").getAsString()),
                            k -> new ArrayList<>()).add(e);
                    read++;
                } catch (RuntimeException e) {
                    torn++;
                }
            }
        }
        this.out = Files.newOutputStream(path, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        if (endsTorn) {
            out.write('\n');
            out.flush();
        }
        log.info("REST execution log {}: {} executions replayed ({} unreadable lines)", path, read, torn);
    }

    private static String orderKey(String apiKey, String clientOrderId) {
        return apiKey + "\u0001" + clientOrderId;
    }

    /** Number the execution (its {@code seq}), write it durably and keep it. */
    synchronized JsonObject append(String apiKey, JsonObject execution) {
        List<JsonObject> list = byKey.computeIfAbsent(apiKey, k -> new ArrayList<>());
        execution.addProperty("seq", list.size() + 1);
        JsonObject stored = execution.deepCopy();
        stored.addProperty("apiKey", apiKey);
        try {
            out.write((stored.toString() + "\n").getBytes(StandardCharsets.UTF_8));
            out.flush();
        } catch (IOException e) {
            throw new IllegalStateException("cannot write the REST execution log", e);
        }
        list.add(execution);
        byOrder.computeIfAbsent(orderKey(apiKey, execution.get("clientOrderId").getAsString()),
                k -> new ArrayList<>()).add(execution);
        return execution;
    }

    /** The executions of one key with a seq above {@code after}, oldest first, at most {@code limit}. */
    synchronized List<JsonObject> after(String apiKey, long after, int limit) {
        List<JsonObject> list = byKey.getOrDefault(apiKey, List.of());
        int from = (int) Math.max(0, Math.min(after, list.size()));
        return new ArrayList<>(list.subList(from, Math.min(list.size(), from + Math.max(0, limit))));
    }

    synchronized List<JsonObject> ofOrder(String apiKey, String clientOrderId) {
        return new ArrayList<>(byOrder.getOrDefault(orderKey(apiKey, clientOrderId), List.of()));
    }

    synchronized long lastSeq(String apiKey) {
        return byKey.getOrDefault(apiKey, List.of()).size();
    }

    synchronized List<JsonObject> all(String apiKey) {
        return new ArrayList<>(byKey.getOrDefault(apiKey, List.of()));
    }

    synchronized void close() {
        try {
            out.close();
        } catch (IOException ignored) {
            // closing at shutdown
        }
    }
}
