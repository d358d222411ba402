package io.tradeflow.venue;

import java.math.BigDecimal;
import java.math.RoundingMode;
import java.util.LinkedHashMap;
import java.util.Map;

/** One order as the venue knows it; every change is journalled as a full snapshot. */
final class VenueOrder {
    // FIX 4.4 OrdStatus (39) values used by the venue
    static final char NEW = '0';
    static final char PARTIALLY_FILLED = '1';
    static final char FILLED = '2';
    static final char CANCELED = '4';
    static final char REJECTED = '8';

    final String session;
    final String clOrdId;
    final String orderId;
    final String symbol;
    final char side;
    final char ordType;
    final BigDecimal orderQty;
    final BigDecimal price; // null for MARKET orders without tag 44
    final String timeInForce; // may be null
    final String account; // may be null
    char status;
    BigDecimal cumQty = BigDecimal.ZERO;
    BigDecimal leavesQty;
    BigDecimal avgPx = BigDecimal.ZERO;
    BigDecimal notional = BigDecimal.ZERO;
    int execSeq;
    String text; // reject / cancel text, may be null
    Integer rejReason; // OrdRejReason (103) when rejected
    String cancelClOrdId; // ClOrdID of the OrderCancelRequest that cancelled it

    VenueOrder(String session, String clOrdId, String orderId, String symbol, char side, char ordType,
            BigDecimal orderQty, BigDecimal price, String timeInForce, String account) {
        this.session = session;
        this.clOrdId = clOrdId;
        this.orderId = orderId;
        this.symbol = symbol;
        this.side = side;
        this.ordType = ordType;
        this.orderQty = orderQty;
        this.price = price;
        this.timeInForce = timeInForce;
        this.account = account;
        this.status = NEW;
        this.leavesQty = orderQty;
    }

    boolean isOpen() {
        return status == NEW || status == PARTIALLY_FILLED;
    }

    /** Next ExecID of this order: unique because OrderIDs are unique and the counter is journalled. */
    String nextExecId() {
        execSeq += 1;
        return orderId + "-" + execSeq;
    }

    /** Apply one fill; keeps CumQty + LeavesQty = OrderQty and AvgPx the volume-weighted price. */
    void fill(BigDecimal qty, BigDecimal px) {
        cumQty = cumQty.add(qty);
        leavesQty = orderQty.subtract(cumQty).max(BigDecimal.ZERO);
        notional = notional.add(qty.multiply(px));
        avgPx = notional.divide(cumQty, 8, RoundingMode.HALF_EVEN).stripTrailingZeros();
        status = leavesQty.signum() == 0 ? FILLED : PARTIALLY_FILLED;
    }

    void reject(int reason, String why) {
        status = REJECTED;
        leavesQty = BigDecimal.ZERO;
        rejReason = reason;
        text = why;
    }

    void cancel(String byClOrdId) {
        status = CANCELED;
        leavesQty = BigDecimal.ZERO;
        cancelClOrdId = byClOrdId;
        text = "canceled on request " + byClOrdId;
    }

    static String statusName(char status) {
        switch (status) {
            case NEW: return "NEW";
            case PARTIALLY_FILLED: return "PARTIALLY_FILLED";
            case FILLED: return "FILLED";
            case CANCELED: return "CANCELED";
            case REJECTED: return "REJECTED";
            default: return String.valueOf(status);
        }
    }

    Map<String, String> toFields() {
        Map<String, String> m = new LinkedHashMap<>();
        m.put("session", session);
        m.put("clOrdId", clOrdId);
        m.put("orderId", orderId);
        m.put("symbol", symbol);
        m.put("side", String.valueOf(side));
        m.put("ordType", String.valueOf(ordType));
        m.put("orderQty", orderQty.toPlainString());
        if (price != null) m.put("price", price.toPlainString());
        if (timeInForce != null) m.put("tif", timeInForce);
        if (account != null) m.put("account", account);
        m.put("status", String.valueOf(status));
        m.put("cumQty", cumQty.toPlainString());
        m.put("leavesQty", leavesQty.toPlainString());
        m.put("avgPx", avgPx.toPlainString());
        m.put("notional", notional.toPlainString());
        m.put("execSeq", Integer.toString(execSeq));
        if (text != null) m.put("text", text);
        if (rejReason != null) m.put("rejReason", rejReason.toString());
        if (cancelClOrdId != null) m.put("cancelClOrdId", cancelClOrdId);
        return m;
    }

    static VenueOrder fromFields(Map<String, String> m) {
        VenueOrder o = new VenueOrder(m.get("session"), m.get("clOrdId"), m.get("orderId"),
                m.get("symbol"), m.get("side").charAt(0), m.get("ordType").charAt(0),
                new BigDecimal(m.get("orderQty")),
                m.containsKey("price") ? new BigDecimal(m.get("price")) : null,
                m.get("tif"), m.get("account"));
        o.status = m.get("status").charAt(0);
        o.cumQty = new BigDecimal(m.get("cumQty"));
        o.leavesQty = new BigDecimal(m.get("leavesQty"));
        o.avgPx = new BigDecimal(m.get("avgPx"));
        o.notional = new BigDecimal(m.get("notional"));
        o.execSeq = Integer.parseInt(m.get("execSeq"));
        o.text = m.get("text");
        o.rejReason = m.containsKey("rejReason") ? Integer.valueOf(m.get("rejReason")) : null;
        o.cancelClOrdId = m.get("cancelClOrdId");
        return o;
    }
}
