package io.tradeflow.venue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.Locale;
import java.util.Set;

import quickfix.ConfigError;
import quickfix.SessionSettings;

/**
 * Settings of the REST/WebSocket order API, read from the [DEFAULT] section of the same
 * QuickFIX/J settings file as {@link VenueConfig}. Without {@code RestHttpPort} the API is off.
 *
 * <ul>
 *   <li>{@code RestHttpPort}, {@code RestWsPort} – the HTTP API and the WebSocket user stream,
 *       both on {@code RestBindAddress} (default and only sensible value here: 127.0.0.1).</li>
 *   <li>{@code RestApiKey} and {@code RestSecretFile} – the one API key and its HMAC secret
 *       (read from the file at start, never logged).</li>
 *   <li>{@code RestExecutionLogPath} – the execution log (default
 *       {@code <FileStorePath>/rest-executions.jsonl}).</li>
 *   <li>{@code RestRateLimit} and {@code RestRateBurst} – requests per second and burst per
 *       API key; above it a 429 with Retry-After (0: no limit, the default).</li>
 *   <li>{@code RestRetryAfterS} – the Retry-After of a 429, in whole seconds (default 1).</li>
 *   <li>{@code RestDelaySymbols} and {@code RestDelayMs} – orders in these symbols are booked
 *       at once but their POST is answered only after the delay (a slow venue).</li>
 *   <li>{@code RestRecvWindowMs} – how far a request's timestamp may be from the venue's
 *       clock (default 30000).</li>
 * </ul>
 */
final class RestConfig {
    final String bindAddress;
    final int httpPort;
    final int wsPort;
    final String apiKey;
    final byte[] secret;
    final Path executionLogPath;
    final double rateLimit;
    final int rateBurst;
    final int retryAfterS;
    final Set<String> delaySymbols;
    final long delayMs;
    final long recvWindowMs;

    private RestConfig(SessionSettings s) throws ConfigError {
        Path store = Paths.get(get(s, "FileStorePath", "store"));
        this.bindAddress = get(s, "RestBindAddress", "127.0.0.1");
        this.executionLogPath = Paths.get(get(s, "RestExecutionLogPath",
                store.resolve("rest-executions.jsonl").toString()));
        this.apiKey = get(s, "RestApiKey", "tradeflow");
        String secretFile = get(s, "RestSecretFile", "");
        if (secretFile.isEmpty()) {
            throw new ConfigError("RestHttpPort needs RestSecretFile (the HMAC secret of RestApiKey)");
        }
        try {
            this.secret = Files.readString(Paths.get(secretFile), StandardCharsets.UTF_8).strip()
                    .getBytes(StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new ConfigError("cannot read RestSecretFile " + secretFile + ": " + e.getMessage());
        }
        try {
            this.httpPort = Integer.parseInt(get(s, "RestHttpPort", "0").trim());
            this.wsPort = Integer.parseInt(get(s, "RestWsPort", "0").trim());
            this.rateLimit = Double.parseDouble(get(s, "RestRateLimit", "0").trim());
            this.rateBurst = Math.max(1, Integer.parseInt(get(s, "RestRateBurst", "10").trim()));
            this.retryAfterS = Math.max(1, Integer.parseInt(get(s, "RestRetryAfterS", "1").trim()));
            this.delayMs = Long.parseLong(get(s, "RestDelayMs", "0").trim());
            this.recvWindowMs = Long.parseLong(get(s, "RestRecvWindowMs", "30000").trim());
        } catch (NumberFormatException e) {
            throw new ConfigError("bad REST setting: " + e.getMessage());
        }
        if (wsPort <= 0) {
            throw new ConfigError("RestHttpPort needs RestWsPort (the user stream)");
        }
        Set<String> delay = new LinkedHashSet<>();
        for (String part : get(s, "RestDelaySymbols", "").split(",")) {
            if (!part.trim().isEmpty()) {
                delay.add(part.trim().toUpperCase(Locale.ROOT));
            }
        }
        this.delaySymbols = Collections.unmodifiableSet(delay);
    }

    /** The REST settings, or null when {@code RestHttpPort} is not set (the API is off). */
    static RestConfig from(SessionSettings settings) throws ConfigError {
        if (!settings.isSetting("RestHttpPort")) {
            return null;
        }
        return new RestConfig(settings);
    }

    boolean delays(String symbol) {
        return delayMs > 0 && delaySymbols.contains(symbol.toUpperCase(Locale.ROOT));
    }

    private static String get(SessionSettings s, String key, String dflt) throws ConfigError {
        return s.isSetting(key) ? s.getString(key) : dflt;
    }

    @Override
    public String toString() {
        return "RestConfig{bind=" + bindAddress + ", http=" + httpPort + ", ws=" + wsPort
                + ", apiKey=" + apiKey + ", secret=***, executions=" + executionLogPath
                + ", rateLimit=" + rateLimit + "/s burst " + rateBurst + ", retryAfterS=" + retryAfterS
                + ", delay=" + delaySymbols + " " + delayMs + "ms}";
    }
}
