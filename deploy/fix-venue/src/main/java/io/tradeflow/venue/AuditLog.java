package io.tradeflow.venue;

import java.io.IOException;
import java.io.OutputStream;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * One JSON object per line for every NewOrderSingle that reached the application
 * (after QuickFIX/J's session-level checks), whatever the venue did with it.
 *
 * <p>Keys: {@code ts} (UTC ISO-8601), {@code session}, {@code msg_seq_num},
 * {@code cl_ord_id}, {@code symbol}, {@code side}, {@code ord_type}, {@code qty},
 * {@code price} (or null), {@code poss_dup} (43=Y), {@code poss_resend} (97=Y),
 * {@code accepted} (a new order was booked), {@code outcome} (NEW, REJECTED, DUPLICATE,
 * IGNORED_POSSDUP), {@code order_id} (or null), {@code reason} (or null).
 */
final class AuditLog {
    private final OutputStream out;

    AuditLog(Path path) throws IOException {
        if (path.getParent() != null) {
            Files.createDirectories(path.getParent());
        }
        this.out = Files.newOutputStream(path, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
    }

    /**
     * The entry of one order request, FIX or REST, with every key in its fixed order: what
     * was asked, then {@code accepted}, {@code outcome}, {@code order_id} and {@code reason}
     * still false or null, for the caller to fill in before {@link #write}.
     */
    static Map<String, Object> orderEntry(String session, Integer msgSeqNum, String clOrdId, String symbol,
            char side, char ordType, BigDecimal qty, BigDecimal price, boolean possDup, boolean possResend) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("ts", Instant.now().toString());
        m.put("session", session);
        m.put("msg_seq_num", msgSeqNum);
        m.put("cl_ord_id", clOrdId);
        m.put("symbol", symbol);
        m.put("side", String.valueOf(side));
        m.put("ord_type", String.valueOf(ordType));
        m.put("qty", qty == null ? null : qty.toPlainString());
        m.put("price", price == null ? null : price.toPlainString());
        m.put("poss_dup", possDup);
        m.put("poss_resend", possResend);
        m.put("accepted", false);
        m.put("outcome", null);
        m.put("order_id", null);
        m.put("reason", null);
        return m;
    }

    synchronized void write(Map<String, Object> fields) {
        StringBuilder sb = new StringBuilder("{");
        boolean first = true;
        for (Map.Entry<String, Object> e : fields.entrySet()) {
            if (!first) sb.append(", ");
            first = false;
            quote(sb, e.getKey());
            sb.append(": ");
            Object v = e.getValue();
            if (v == null) {
                sb.append("null");
            } else if (v instanceof Boolean || v instanceof Integer || v instanceof Long) {
                sb.append(v);
            } else {
                quote(sb, v.toString());
            }
        }
        sb.append("}\n");
        try {
            out.write(sb.toString().getBytes(StandardCharsets.UTF_8));
            out.flush();
        } catch (IOException e) {
            throw new IllegalStateException("cannot write audit log", e);
        }
    }

    synchronized void close() {
        try {
            out.close();
        } catch (IOException ignored) {
            // closing at shutdown
        }
    }

    private static void quote(StringBuilder sb, String s) {
        sb.append('"');
        for (char c : s.toCharArray()) {
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
            }
        }
        sb.append('"');
    }
}
