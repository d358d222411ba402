package io.tradeflow.venue;

import java.io.IOException;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Collections;
import java.util.LinkedHashSet;
import java.util.Locale;
import java.util.Set;
import java.security.MessageDigest;

import quickfix.ConfigError;
import quickfix.SessionSettings;

/**
 * The venue's own behaviour settings, read from the [DEFAULT] section of the QuickFIX/J
 * settings file next to the engine's settings.
 *
 * <ul>
 *   <li>{@code AuditLogPath} – JSON-lines file, one line per NewOrderSingle received
 *       (default {@code <FileStorePath>/audit.jsonl}).</li>
 *   <li>{@code OrderJournalPath} – append-only order journal (default
 *       {@code <FileStorePath>/orders.journal}).</li>
 *   <li>{@code RejectSymbols} – comma list; orders are rejected (OrdRejReason=1).</li>
 *   <li>{@code RestingSymbols} – comma list; orders are acked but never filled.</li>
 *   <li>{@code DropAckSymbols} – comma list; orders are processed and recorded but no
 *       ExecutionReport at all is sent for them (lost ack / lost fills).</li>
 *   <li>{@code PartialFills} – number of fills per order (default 1).</li>
 *   <li>{@code DefaultPrice} – fill price of MARKET orders without tag 44 (default 100).</li>
 *   <li>{@code MaxOrderQty} – larger orders are rejected (OrdRejReason=3, default 1000000).</li>
 *   <li>{@code LogonUsername} and {@code LogonPasswordFile} – when set, a Logon must carry
 *       this Username (553) and the Password (554) held in that file (read at start, never
 *       logged); any other Logon is refused with a Logout.</li>
 * </ul>
 *
 * <p>TLS is QuickFIX/J's own ({@code SocketUseSSL}, {@code SocketKeyStore}...).
 */
final class VenueConfig {
    final Path auditLogPath;
    final Path journalPath;
    final Set<String> rejectSymbols;
    final Set<String> restingSymbols;
    final Set<String> dropAckSymbols;
    final int partialFills;
    final BigDecimal defaultPrice;
    final BigDecimal maxOrderQty;
    final String logonUsername;
    final String logonPassword;

    private VenueConfig(SessionSettings s) throws ConfigError {
        Path store = Paths.get(get(s, "FileStorePath", "store"));
        this.auditLogPath = Paths.get(get(s, "AuditLogPath", store.resolve("audit.jsonl").toString()));
        this.journalPath = Paths.get(get(s, "OrderJournalPath", store.resolve("orders.journal").toString()));
        this.rejectSymbols = symbols(get(s, "RejectSymbols", ""));
        this.restingSymbols = symbols(get(s, "RestingSymbols", ""));
        this.dropAckSymbols = symbols(get(s, "DropAckSymbols", ""));
        try {
            this.partialFills = Math.max(1, Integer.parseInt(get(s, "PartialFills", "1").trim()));
            this.defaultPrice = new BigDecimal(get(s, "DefaultPrice", "100").trim());
            this.maxOrderQty = new BigDecimal(get(s, "MaxOrderQty", "1000000").trim());
        } catch (NumberFormatException e) {
            throw new ConfigError("bad venue setting: " + e.getMessage());
        }
        String user = get(s, "LogonUsername", "");
        String passwordFile = get(s, "LogonPasswordFile", "");
        if (user.isEmpty() != passwordFile.isEmpty()) {
            throw new ConfigError("LogonUsername and LogonPasswordFile go together");
        }
        this.logonUsername = user.isEmpty() ? null : user;
        try {
            this.logonPassword = passwordFile.isEmpty() ? null
                    : Files.readString(Paths.get(passwordFile), StandardCharsets.UTF_8).strip();
        } catch (IOException e) {
            throw new ConfigError("cannot read LogonPasswordFile " + passwordFile + ": " + e.getMessage());
        }
    }

    /** Tell whether a Logon with these credentials may log on (constant time on the password). */
    boolean admits(String username, String password) {
        if (logonUsername == null) {
            return true;
        }
        boolean userOk = logonUsername.equals(username);
        boolean passwordOk = password != null && MessageDigest.isEqual(
                logonPassword.getBytes(StandardCharsets.UTF_8), password.getBytes(StandardCharsets.UTF_8));
        return userOk && passwordOk;
    }

    static VenueConfig from(SessionSettings settings) throws ConfigError {
        return new VenueConfig(settings);
    }

    /** A setting of the session, or {@code dflt} (shared with the market data publisher). */
    static String get(SessionSettings s, String key, String dflt) throws ConfigError {
        return s.isSetting(key) ? s.getString(key) : dflt;
    }

    /** Comma-separated symbols, trimmed and upper-cased, in order, once each. */
    static Set<String> symbols(String csv) {
        Set<String> out = new LinkedHashSet<>();
        for (String part : csv.split(",")) {
            String sym = part.trim();
            if (!sym.isEmpty()) {
                out.add(sym.toUpperCase(Locale.ROOT));
            }
        }
        return Collections.unmodifiableSet(out);
    }

    boolean rejects(String symbol) {
        return rejectSymbols.contains(symbol.toUpperCase(Locale.ROOT));
    }

    /** The price an order fills at: a LIMIT order's price; a MARKET order's price if it gave one, else DefaultPrice. */
    BigDecimal fillPrice(char ordType, BigDecimal price) {
        return ordType == '2' || price != null ? price : defaultPrice;
    }

    boolean rests(String symbol) {
        return restingSymbols.contains(symbol.toUpperCase(Locale.ROOT));
    }

    boolean dropsAcks(String symbol) {
        return dropAckSymbols.contains(symbol.toUpperCase(Locale.ROOT));
    }

    @Override
    public String toString() {
        return "VenueConfig{audit=" + auditLogPath + ", journal=" + journalPath
                + ", reject=" + rejectSymbols + ", resting=" + restingSymbols
                + ", dropAck=" + dropAckSymbols + ", partialFills=" + partialFills
                + ", defaultPrice=" + defaultPrice + ", maxOrderQty=" + maxOrderQty
                + ", logonUsername=" + logonUsername + ", logonPassword=" + (logonPassword == null ? "none" : "***")
                + "}";
    }
}
