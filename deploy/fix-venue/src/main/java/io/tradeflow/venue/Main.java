package io.tradeflow.venue;

import java.io.FileInputStream;
import java.io.InputStream;
import java.util.concurrent.CountDownLatch;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import quickfix.Acceptor;
import quickfix.DefaultMessageFactory;
import quickfix.FileLogFactory;
import quickfix.FileStoreFactory;
import quickfix.SessionSettings;
import quickfix.SocketAcceptor;

/**
 * Starts the venue: {@code java -cp 'lib/*' io.tradeflow.venue.Main venue.cfg}.
 *
 * <p>The settings file is an ordinary QuickFIX/J acceptor settings file; the venue's own
 * keys (see {@link VenueConfig}) sit in its [DEFAULT] section. Message store and message
 * logs are QuickFIX/J's file store and file log, so sequence numbers survive a restart.
 * SIGTERM logs the sessions out and stops cleanly; after SIGKILL the journal and the file
 * store are still consistent enough to resume. The message logs mask passwords
 * ({@link MaskingLogFactory}); TLS is QuickFIX/J's ({@code SocketUseSSL=Y} and its keystore).
 */
public final class Main {
    private static final Logger log = LoggerFactory.getLogger(Main.class);

    private Main() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length != 1) {
            System.err.println("usage: io.tradeflow.venue.Main <settings file>");
            System.exit(2);
        }
        SessionSettings settings;
        try (InputStream in = new FileInputStream(args[0])) {
            settings = new SessionSettings(in);
        }
        VenueConfig config = VenueConfig.from(settings);
        log.info("venue settings {}", config);
        OrderBook book = new OrderBook(config.journalPath);
        AuditLog audit = new AuditLog(config.auditLogPath);
        MarketDataPublisher marketData = MarketDataPublisher.from(settings); // null: MdSymbols empty
        VenueApplication app = new VenueApplication(config, book, audit, marketData);
        RestConfig restConfig = RestConfig.from(settings); // null: no REST/WebSocket API
        RestApi rest = restConfig == null ? null : new RestApi(restConfig, config, book, audit);

        // single-threaded acceptor: all sessions' messages are handled on one thread, in order
        Acceptor acceptor = new SocketAcceptor(app, new FileStoreFactory(settings), settings,
                new MaskingLogFactory(new FileLogFactory(settings)), new DefaultMessageFactory());

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            log.info("stopping venue");
            try {
                if (rest != null) {
                    rest.stop();
                }
                if (marketData != null) {
                    marketData.stop();
                }
                acceptor.stop();
            } finally {
                book.close();
                audit.close();
                stopped.countDown();
            }
        }, "venue-shutdown"));

        acceptor.start();
        if (marketData != null) {
            marketData.start();
        }
        if (rest != null) {
            rest.start();
            System.out.println("REST READY http=" + restConfig.httpPort + " ws=" + restConfig.wsPort);
        }
        String port = settings.isSetting("SocketAcceptPort") ? settings.getString("SocketAcceptPort") : "?";
        log.info("FIX venue listening on port {} with sessions {}", port, acceptor.getSessions());
        System.out.println("VENUE READY port=" + port);
        System.out.flush();
        stopped.await();
    }
}
