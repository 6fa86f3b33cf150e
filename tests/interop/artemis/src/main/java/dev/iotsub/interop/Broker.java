package dev.iotsub.interop;

import java.io.IOException;
import java.net.ServerSocket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.apache.activemq.artemis.api.core.QueueConfiguration;
import org.apache.activemq.artemis.api.core.RoutingType;
import org.apache.activemq.artemis.core.config.Configuration;
import org.apache.activemq.artemis.core.config.impl.ConfigurationImpl;
import org.apache.activemq.artemis.core.server.Queue;
import org.apache.activemq.artemis.core.server.embedded.EmbeddedActiveMQ;

/**
 * Starts an embedded Artemis broker on 127.0.0.1 with one AMQP 1.0 acceptor (TLS only, SASL PLAIN) and
 * one anycast queue, then writes, under the state directory:
 * <ul>
 *   <li>{@code endpoint.json}: {"amqp":"127.0.0.1:PORT"} once the broker accepts connections;</li>
 *   <li>{@code stats.json}, every 100 ms: the queue's messageCount, deliveringCount, messagesAdded,
 *       messagesAcknowledged, consumerCount, and the clientIds of accepted signed logins.</li>
 * </ul>
 * Arguments are {@code --key value} pairs: state-dir, keystore, keystore-password, queue, access-key-id,
 * access-key-secret, publisher-user, publisher-password.
 */
public final class Broker {
    public static void main(String[] argv) throws Exception {
        Map<String, String> args = new HashMap<>();
        for (int i = 0; i + 1 < argv.length; i += 2) {
            if (!argv[i].startsWith("--")) {
                throw new IllegalArgumentException("expected --key value pairs, got " + argv[i]);
            }
            args.put(argv[i].substring(2), argv[i + 1]);
        }
        Path stateDir = Path.of(require(args, "state-dir"));
        String queueName = args.getOrDefault("queue", "default");
        int port = freePort();

        SignedLoginSecurityManager security = new SignedLoginSecurityManager(
                require(args, "access-key-id"), require(args, "access-key-secret"),
                require(args, "publisher-user"), require(args, "publisher-password"));

        String acceptor = "tcp://127.0.0.1:" + port
                + "?protocols=AMQP;saslMechanisms=PLAIN;sslEnabled=true"
                + ";keyStoreType=PKCS12;keyStorePath=" + require(args, "keystore")
                + ";keyStorePassword=" + require(args, "keystore-password");
        Configuration config = new ConfigurationImpl()
                .setName("iotsub-interop")
                .setPersistenceEnabled(false)
                .setSecurityEnabled(true)
                .setJournalDirectory(stateDir.resolve("journal").toString())
                .setBindingsDirectory(stateDir.resolve("bindings").toString())
                .setLargeMessagesDirectory(stateDir.resolve("large").toString())
                .setPagingDirectory(stateDir.resolve("paging").toString())
                .addAcceptorConfiguration("amqps", acceptor)
                .addQueueConfiguration(QueueConfiguration.of(queueName)
                        .setAddress(queueName)
                        .setRoutingType(RoutingType.ANYCAST)
                        .setDurable(false));

        EmbeddedActiveMQ broker = new EmbeddedActiveMQ();
        broker.setConfiguration(config);
        broker.setSecurityManager(security);
        broker.start();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                broker.stop();
            } catch (Exception ignored) {
                // exiting anyway
            }
        }));

        writeAtomically(stateDir.resolve("endpoint.json"), "{\"amqp\":\"127.0.0.1:" + port + "\"}\n");
        System.out.println("artemis: AMQP over TLS on 127.0.0.1:" + port + ", queue " + queueName);

        Queue queue = broker.getActiveMQServer().locateQueue(queueName);
        while (true) {
            List<String> clients = new ArrayList<>(security.acceptedClientIds);
            String stats = String.format(
                    "{\"messageCount\":%d,\"deliveringCount\":%d,\"messagesAdded\":%d,\"messagesAcknowledged\":%d,"
                            + "\"consumerCount\":%d,\"acceptedClientIds\":[%s],\"refusals\":%d}\n",
                    queue.getMessageCount(), queue.getDeliveringCount(), queue.getMessagesAdded(),
                    queue.getMessagesAcknowledged(), queue.getConsumerCount(),
                    String.join(",", clients.stream().map(c -> "\"" + c.replace("\"", "") + "\"").toList()),
                    security.refusals.size());
            writeAtomically(stateDir.resolve("stats.json"), stats);
            Thread.sleep(100);
        }
    }

    private static String require(Map<String, String> args, String key) {
        String value = args.get(key);
        if (value == null) {
            throw new IllegalArgumentException("missing --" + key);
        }
        return value;
    }

    private static int freePort() throws IOException {
        try (ServerSocket socket = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
            return socket.getLocalPort();
        }
    }

    private static void writeAtomically(Path path, String text) throws IOException {
        Path tmp = path.resolveSibling(path.getFileName() + ".tmp");
        Files.writeString(tmp, text, StandardCharsets.UTF_8);
        Files.move(tmp, path, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
