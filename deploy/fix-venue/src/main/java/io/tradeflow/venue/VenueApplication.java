package io.tradeflow.venue;

import java.math.BigDecimal;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicLong;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import quickfix.Application;
import quickfix.FieldMap;
import quickfix.FieldNotFound;
import quickfix.IncorrectTagValue;
import quickfix.Message;
import quickfix.RejectLogon;
import quickfix.Session;
import quickfix.SessionID;
import quickfix.SessionNotFound;
import quickfix.UnsupportedMessageType;

/**
 * A small FIX 4.4 venue: acks, fills, rejects and cancels orders and answers status requests.
 *
 * <p>Handled application messages: NewOrderSingle (D), OrderCancelRequest (F),
 * OrderCancelReplaceRequest (G, always refused with OrderCancelReject) and
 * OrderStatusRequest (H), and with market data on ({@link MarketDataPublisher})
 * MarketDataRequest (V). Anything else gets a BusinessMessageReject from QuickFIX/J.
 * Incoming messages have already passed QuickFIX/J's session checks (sequence numbers,
 * CompIDs, SendingTime latency) and validation against FIX44.xml.
 */
public final class VenueApplication implements Application {
    private static final Logger log = LoggerFactory.getLogger(VenueApplication.class);

    // tags (FIX 4.4)
    static final int ACCOUNT = 1;
    static final int AVG_PX = 6;
    static final int CL_ORD_ID = 11;
    static final int CUM_QTY = 14;
    static final int EXEC_ID = 17;
    static final int LAST_PX = 31;
    static final int LAST_QTY = 32;
    static final int MSG_SEQ_NUM = 34;
    static final int ORDER_ID = 37;
    static final int ORDER_QTY = 38;
    static final int ORD_STATUS = 39;
    static final int ORD_TYPE = 40;
    static final int ORIG_CL_ORD_ID = 41;
    static final int POSS_DUP_FLAG = 43;
    static final int PRICE = 44;
    static final int SIDE = 54;
    static final int SYMBOL = 55;
    static final int TEXT = 58;
    static final int TIME_IN_FORCE = 59;
    static final int TRANSACT_TIME = 60;
    static final int POSS_RESEND = 97;
    static final int CXL_REJ_REASON = 102;
    static final int ORD_REJ_REASON = 103;
    static final int CXL_REJ_RESPONSE_TO = 434;
    static final int USERNAME = 553;
    static final int PASSWORD = 554;
    static final int EXEC_TYPE = 150;
    static final int LEAVES_QTY = 151;
    static final int ORD_STATUS_REQ_ID = 790;

    // ExecType (150)
    static final char EXEC_NEW = '0';
    static final char EXEC_CANCELED = '4';
    static final char EXEC_REJECTED = '8';
    static final char EXEC_TRADE = 'F';
    static final char EXEC_ORDER_STATUS = 'I';

    // OrdRejReason (103)
    static final int REJ_UNKNOWN_SYMBOL = 1;
    static final int REJ_EXCEEDS_LIMIT = 3;
    static final int REJ_UNKNOWN_ORDER = 5;
    static final int REJ_DUPLICATE_ORDER = 6;
    static final int REJ_INCORRECT_QUANTITY = 13;
    static final int REJ_OTHER = 99;

    private final VenueConfig config;
    private final OrderBook book;
    private final AuditLog audit;
    /** Market data (35=V answered by W and X); null when the venue publishes none. */
    private final MarketDataPublisher marketData;
    /** ExecIDs of messages that belong to no booked order (status replies, duplicate rejects). */
    private final String bootId = Long.toString(System.currentTimeMillis(), 36).toUpperCase();
    private final AtomicLong adHocExecIds = new AtomicLong();

    public VenueApplication(VenueConfig config, OrderBook book, AuditLog audit) {
        this(config, book, audit, null);
    }

    VenueApplication(VenueConfig config, OrderBook book, AuditLog audit, MarketDataPublisher marketData) {
        this.config = config;
        this.book = book;
        this.audit = audit;
        this.marketData = marketData;
    }

    @Override
    public void onCreate(SessionID sessionId) {
        log.info("session created {}", sessionId);
    }

    @Override
    public void onLogon(SessionID sessionId) {
        log.info("logon {}", sessionId);
        completeInterruptedFills(sessionId);
    }

    /**
     * Fill what a kill interrupted: an order booked (and maybe partly filled) whose fills
     * the venue did not finish before it died is filled now, as it would have been, when
     * its session logs on again (resting symbols stay resting).
     */
    private void completeInterruptedFills(SessionID sid) {
        String session = sid.toString();
        for (VenueOrder order : book.all()) {
            if (!order.session.equals(session) || !order.isOpen() || config.rests(order.symbol)) {
                continue;
            }
            BigDecimal px = config.fillPrice(order.ordType, order.price);
            BigDecimal slice = order.leavesQty;
            order.fill(slice, px);
            String execId = order.nextExecId();
            book.save(order);
            log.info("{}: {} was interrupted by a restart; filled its remaining {}", sid, order.clOrdId, slice);
            if (!config.dropsAcks(order.symbol)) {
                Message er = report(order, EXEC_TRADE, execId);
                er.setString(LAST_QTY, plain(slice));
                er.setString(LAST_PX, plain(px));
                send(er, sid);
            }
        }
    }

    @Override
    public void onLogout(SessionID sessionId) {
        log.info("logout {}", sessionId);
        if (marketData != null) {
            marketData.onLogout(sessionId);
        }
    }

    @Override
    public void toAdmin(Message message, SessionID sessionId) {
        // nothing to add to session messages
    }

    @Override
    public void fromAdmin(Message message, SessionID sessionId) throws FieldNotFound, RejectLogon {
        // a Logon passes QuickFIX/J's session checks, then the credentials when they are set
        if (!"A".equals(message.getHeader().getString(quickfix.field.MsgType.FIELD))) {
            return;
        }
        String user = message.isSetField(USERNAME) ? message.getString(USERNAME) : null;
        String password = message.isSetField(PASSWORD) ? message.getString(PASSWORD) : null;
        if (!config.admits(user, password)) {
            log.warn("logon refused for {}: bad username or password (username {})", sessionId, user);
            throw new RejectLogon("bad username or password");
        }
    }

    @Override
    public void toApp(Message message, SessionID sessionId) {
        // outgoing application messages are sent as built
    }

    @Override
    public void fromApp(Message message, SessionID sessionId)
            throws FieldNotFound, IncorrectTagValue, UnsupportedMessageType {
        String msgType = message.getHeader().getString(quickfix.field.MsgType.FIELD);
        switch (msgType) {
            case "D":
                onNewOrderSingle(message, sessionId);
                break;
            case "F":
                onCancelRequest(message, sessionId);
                break;
            case "G":
                onCancelReplaceRequest(message, sessionId);
                break;
            case "H":
                onStatusRequest(message, sessionId);
                break;
            case "V":
                if (marketData == null) {
                    throw new UnsupportedMessageType(); // no MdSymbols: no market data
                }
                marketData.onRequest(message, sessionId);
                break;
            default:
                throw new UnsupportedMessageType();
        }
    }

    // ---------------------------------------------------------------- NewOrderSingle

    private void onNewOrderSingle(Message msg, SessionID sid) throws FieldNotFound {
        String session = sid.toString();
        String clOrdId = msg.getString(CL_ORD_ID);
        String symbol = msg.getString(SYMBOL);
        char side = msg.getChar(SIDE);
        char ordType = msg.getChar(ORD_TYPE);
        BigDecimal qty = optDecimal(msg, ORDER_QTY);
        BigDecimal price = optDecimal(msg, PRICE);
        boolean possDup = flag(msg.getHeader(), POSS_DUP_FLAG);
        boolean possResend = flag(msg.getHeader(), POSS_RESEND);

        // fixed key order; the outcome is filled in below
        Map<String, Object> a = AuditLog.orderEntry(session, msg.getHeader().getInt(MSG_SEQ_NUM), clOrdId, symbol,
                side, ordType, qty, price, possDup, possResend);

        VenueOrder known = book.get(session, clOrdId);
        if (known != null) {
            a.put("accepted", false);
            a.put("order_id", known.orderId);
            if (possDup || possResend) {
                // a resend of an order we already have: never a second order, no answer
                a.put("outcome", "IGNORED_POSSDUP");
                a.put("reason", "already known, status " + VenueOrder.statusName(known.status));
                audit.write(a);
                log.info("ignoring possible duplicate of known ClOrdID {}", clOrdId);
                return;
            }
            a.put("outcome", "DUPLICATE");
            a.put("reason", "duplicate ClOrdID");
            audit.write(a);
            Message er = adHocReport(msg, "NONE", EXEC_REJECTED, VenueOrder.REJECTED);
            er.setInt(ORD_REJ_REASON, REJ_DUPLICATE_ORDER);
            er.setString(TEXT, "duplicate ClOrdID " + clOrdId + " (order " + known.orderId + ")");
            send(er, sid);
            return;
        }

        BigDecimal bookQty = qty == null ? BigDecimal.ZERO : qty;
        VenueOrder order = new VenueOrder(session, clOrdId, book.nextOrderId(), symbol, side,
                ordType, bookQty, price, optString(msg, TIME_IN_FORCE), optString(msg, ACCOUNT));

        String why = null;
        int reason = REJ_OTHER;
        if (config.rejects(symbol)) {
            why = "symbol " + symbol + " is not traded";
            reason = REJ_UNKNOWN_SYMBOL;
        } else if (qty == null || qty.signum() <= 0) {
            why = "OrderQty (38) must be positive";
            reason = REJ_INCORRECT_QUANTITY;
        } else if (qty.compareTo(config.maxOrderQty) > 0) {
            why = "OrderQty " + qty.toPlainString() + " exceeds MaxOrderQty " + config.maxOrderQty.toPlainString();
            reason = REJ_EXCEEDS_LIMIT;
        } else if (ordType != '1' && ordType != '2') {
            why = "unsupported OrdType " + ordType + " (only 1=MARKET, 2=LIMIT)";
        } else if (ordType == '2' && (price == null || price.signum() <= 0)) {
            why = "LIMIT order needs a positive Price (44)";
        }

        boolean dropAcks = config.dropsAcks(symbol);
        a.put("order_id", order.orderId);
        if (why != null) {
            order.reject(reason, why);
            String execId = order.nextExecId();
            book.save(order);
            a.put("accepted", false);
            a.put("outcome", "REJECTED");
            a.put("reason", why);
            audit.write(a);
            send(report(order, EXEC_REJECTED, execId), sid);
            return;
        }

        // accepted: book it, then ack (unless acks are dropped), then fill
        String ackExecId = order.nextExecId();
        book.save(order);
        a.put("accepted", true);
        a.put("outcome", "NEW");
        a.put("reason", dropAcks ? "ExecutionReports dropped (DropAckSymbols)" : null);
        audit.write(a);
        if (!dropAcks) {
            send(report(order, EXEC_NEW, ackExecId), sid);
        }
        if (config.rests(symbol)) {
            return;
        }
        BigDecimal px = config.fillPrice(ordType, price);
        for (BigDecimal slice : slices(order.orderQty, config.partialFills)) {
            order.fill(slice, px);
            String execId = order.nextExecId();
            book.save(order); // write-ahead: the journal knows the fill before the client does
            if (!dropAcks) {
                Message er = report(order, EXEC_TRADE, execId);
                er.setString(LAST_QTY, plain(slice));
                er.setString(LAST_PX, plain(px));
                send(er, sid);
            }
        }
    }

    /** Split qty into n fills: whole lots when possible, the remainder in the last one. */
    static List<BigDecimal> slices(BigDecimal qty, int n) {
        List<BigDecimal> out = new ArrayList<>();
        boolean whole = qty.stripTrailingZeros().scale() <= 0;
        int parts = whole ? (int) Math.min(n, qty.longValue()) : 1;
        if (parts <= 1) {
            out.add(qty);
            return out;
        }
        BigDecimal each = BigDecimal.valueOf(qty.longValue() / parts);
        BigDecimal done = BigDecimal.ZERO;
        for (int i = 0; i < parts - 1; i++) {
            out.add(each);
            done = done.add(each);
        }
        out.add(qty.subtract(done));
        return out;
    }

    // ---------------------------------------------------------------- cancel / replace

    private void onCancelRequest(Message msg, SessionID sid) throws FieldNotFound {
        String clOrdId = msg.getString(CL_ORD_ID);
        String origClOrdId = msg.getString(ORIG_CL_ORD_ID);
        VenueOrder order = book.get(sid.toString(), origClOrdId);
        if (order == null) {
            send(cancelReject(clOrdId, origClOrdId, "NONE", VenueOrder.REJECTED, 1, 1,
                    "unknown order " + origClOrdId), sid);
            return;
        }
        if (!order.isOpen()) {
            send(cancelReject(clOrdId, origClOrdId, order.orderId, order.status, 1, 0,
                    "too late to cancel: order is " + VenueOrder.statusName(order.status)), sid);
            return;
        }
        order.cancel(clOrdId);
        String execId = order.nextExecId();
        book.save(order);
        Message er = report(order, EXEC_CANCELED, execId);
        er.setString(CL_ORD_ID, clOrdId);
        er.setString(ORIG_CL_ORD_ID, origClOrdId);
        send(er, sid);
    }

    private void onCancelReplaceRequest(Message msg, SessionID sid) throws FieldNotFound {
        String clOrdId = msg.getString(CL_ORD_ID);
        String origClOrdId = msg.getString(ORIG_CL_ORD_ID);
        VenueOrder order = book.get(sid.toString(), origClOrdId);
        send(cancelReject(clOrdId, origClOrdId, order == null ? "NONE" : order.orderId,
                order == null ? VenueOrder.REJECTED : order.status, 2, 99,
                "cancel/replace is not supported by this venue"), sid);
    }

    private static Message cancelReject(String clOrdId, String origClOrdId, String orderId,
            char ordStatus, int responseTo, int reason, String text) {
        Message m = new quickfix.fix44.OrderCancelReject();
        m.setString(ORDER_ID, orderId);
        m.setString(CL_ORD_ID, clOrdId);
        m.setString(ORIG_CL_ORD_ID, origClOrdId);
        m.setChar(ORD_STATUS, ordStatus);
        m.setChar(CXL_REJ_RESPONSE_TO, Character.forDigit(responseTo, 10));
        m.setInt(CXL_REJ_REASON, reason);
        m.setString(TEXT, text);
        m.setUtcTimeStamp(TRANSACT_TIME, LocalDateTime.now(ZoneOffset.UTC), true);
        return m;
    }

    // ---------------------------------------------------------------- status

    private void onStatusRequest(Message msg, SessionID sid) throws FieldNotFound {
        String clOrdId = msg.getString(CL_ORD_ID);
        VenueOrder order = book.get(sid.toString(), clOrdId);
        Message er;
        if (order == null) {
            er = adHocReport(msg, "NONE", EXEC_ORDER_STATUS, VenueOrder.REJECTED);
            er.setInt(ORD_REJ_REASON, REJ_UNKNOWN_ORDER);
            er.setString(TEXT, "unknown order");
        } else {
            er = report(order, EXEC_ORDER_STATUS, adHocExecId());
        }
        if (msg.isSetField(ORD_STATUS_REQ_ID)) {
            er.setString(ORD_STATUS_REQ_ID, msg.getString(ORD_STATUS_REQ_ID));
        }
        send(er, sid);
    }

    // ---------------------------------------------------------------- reports

    /** An ExecutionReport that carries the order's full current state. */
    private Message report(VenueOrder o, char execType, String execId) {
        Message m = new quickfix.fix44.ExecutionReport();
        m.setString(ORDER_ID, o.orderId);
        m.setString(CL_ORD_ID, o.clOrdId);
        m.setString(EXEC_ID, execId);
        m.setChar(EXEC_TYPE, execType);
        m.setChar(ORD_STATUS, o.status);
        if (o.account != null) m.setString(ACCOUNT, o.account);
        m.setString(SYMBOL, o.symbol);
        m.setChar(SIDE, o.side);
        m.setString(ORDER_QTY, o.orderQty.toPlainString());
        m.setChar(ORD_TYPE, o.ordType);
        if (o.price != null) m.setString(PRICE, o.price.toPlainString());
        if (o.timeInForce != null) m.setString(TIME_IN_FORCE, o.timeInForce);
        m.setString(LEAVES_QTY, plain(o.leavesQty));
        m.setString(CUM_QTY, plain(o.cumQty));
        m.setString(AVG_PX, plain(o.avgPx));
        if (o.status == VenueOrder.REJECTED && o.rejReason != null) {
            m.setInt(ORD_REJ_REASON, o.rejReason);
        }
        if (o.text != null && (o.status == VenueOrder.REJECTED || o.status == VenueOrder.CANCELED)) {
            m.setString(TEXT, o.text);
        }
        m.setUtcTimeStamp(TRANSACT_TIME, LocalDateTime.now(ZoneOffset.UTC), true);
        return m;
    }

    /** An ExecutionReport about a request that matches no booked order. */
    private Message adHocReport(Message request, String orderId, char execType, char ordStatus)
            throws FieldNotFound {
        Message m = new quickfix.fix44.ExecutionReport();
        m.setString(ORDER_ID, orderId);
        m.setString(CL_ORD_ID, request.getString(CL_ORD_ID));
        m.setString(EXEC_ID, adHocExecId());
        m.setChar(EXEC_TYPE, execType);
        m.setChar(ORD_STATUS, ordStatus);
        m.setString(SYMBOL, request.getString(SYMBOL));
        m.setChar(SIDE, request.getChar(SIDE));
        for (int tag : new int[] {ACCOUNT, ORDER_QTY, ORD_TYPE, PRICE}) {
            if (request.isSetField(tag)) m.setString(tag, request.getString(tag));
        }
        m.setString(LEAVES_QTY, "0");
        m.setString(CUM_QTY, "0");
        m.setString(AVG_PX, "0");
        m.setUtcTimeStamp(TRANSACT_TIME, LocalDateTime.now(ZoneOffset.UTC), true);
        return m;
    }

    /** Decimal without exponent or trailing zeros: 100, 2.5, 0. */
    static String plain(BigDecimal d) {
        return d.signum() == 0 ? "0" : d.stripTrailingZeros().toPlainString();
    }

    private String adHocExecId() {
        return "S" + bootId + "-" + adHocExecIds.incrementAndGet();
    }

    private static void send(Message m, SessionID sid) {
        try {
            Session.sendToTarget(m, sid);
        } catch (SessionNotFound e) {
            log.error("session {} gone, report not sent: {}", sid, m);
        }
    }

    private static BigDecimal optDecimal(FieldMap m, int tag) throws FieldNotFound {
        if (!m.isSetField(tag)) return null;
        try {
            return new BigDecimal(m.getString(tag).trim());
        } catch (NumberFormatException e) {
            return null;
        }
    }

    private static String optString(FieldMap m, int tag) throws FieldNotFound {
        return m.isSetField(tag) ? m.getString(tag) : null;
    }

    private static boolean flag(FieldMap m, int tag) throws FieldNotFound {
        return m.isSetField(tag) && "Y".equals(m.getString(tag));
    }
}
