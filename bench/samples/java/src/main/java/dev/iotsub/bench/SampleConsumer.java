package dev.iotsub.bench;

import java.io.BufferedOutputStream;
import java.io.FileOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.Hashtable;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;
import javax.jms.Connection;
import javax.jms.ConnectionFactory;
import javax.jms.Destination;
import javax.jms.Message;
import javax.jms.MessageConsumer;
import javax.jms.MessageListener;
import javax.jms.Session;
import javax.naming.Context;
import javax.naming.InitialContext;

/**
 * The IoT Platform's official Java AMQP sample consumer (Apache Qpid JMS), as the platform documents
 * it, for the side-by-side benchmark in bench/compare.py:
 *
 * <ul>
 *   <li>{@code connections} connections per process named {@code ${clientId}-0}, {@code -1}, …, each
 *       with its own signed username and password (signed afresh for each connection);
 *   <li>{@code failover:(amqps://host:port?amqp.idleTimeout=80000)?failover.reconnectDelay=30},
 *       found through JNDI ({@code JmsInitialContextFactory}), SASL PLAIN;
 *   <li>{@code Session.AUTO_ACKNOWLEDGE} and a {@code MessageListener} that hands each message to a
 *       thread pool (availableProcessors core threads, twice that at most, a queue of 50 000);
 *   <li>the pool's work: {@code getBody(byte[].class)}, the {@code topic}, {@code messageId} and
 *       {@code generateTime} properties, one formatted line (the sample logs it; here it goes to
 *       /dev/null).
 * </ul>
 *
 * <p>Two changes for the benchmark, neither in the message path: the emulator's CA comes from a
 * PKCS12 trust store in the URI (verification stays on), and a full pool queue runs the task in
 * the listener's thread instead of dropping the message (the sample logs and loses it), so every
 * message does the same work.
 *
 * <p>Flags: --host --port --client-id --connections --access-key-id --access-key-secret
 * --consumer-group-id --instance-id --sign-method --trust-store --trust-store-password --out.
 * Each also reads IOTSUB_&lt;FLAG&gt; like the worker.
 */
public final class SampleConsumer {
    private static final AtomicLong processed = new AtomicLong();
    private static PrintStream out;

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = parse(argv);
        String host = arg(args, "host", "localhost");
        String port = arg(args, "port", "5671");
        String clientId = arg(args, "client-id", "sample-java");
        int connectionCount = Integer.parseInt(arg(args, "connections", "4"));
        String accessKey = arg(args, "access-key-id", null);
        String accessSecret = arg(args, "access-key-secret", null);
        String consumerGroupId = arg(args, "consumer-group-id", "DEFAULT_GROUP");
        String iotInstanceId = arg(args, "instance-id", "");
        String signMethod = arg(args, "sign-method", "hmacsha1");
        String trustStore = arg(args, "trust-store", null);
        String trustStorePassword = arg(args, "trust-store-password", "changeit");
        String outPath = arg(args, "out", "/dev/null");
        out = new PrintStream(new BufferedOutputStream(new FileOutputStream(outPath), 64 * 1024), false, StandardCharsets.UTF_8);

        int cpus = Runtime.getRuntime().availableProcessors();
        ExecutorService executorService = new ThreadPoolExecutor(cpus, cpus * 2, 60, TimeUnit.SECONDS,
                new LinkedBlockingQueue<>(50000), new ThreadPoolExecutor.CallerRunsPolicy());
        MessageListener messageListener = message -> executorService.submit(() -> processMessage(message));

        List<Connection> connections = new ArrayList<>();
        for (int i = 0; i < connectionCount; i++) {
            long timeStamp = System.currentTimeMillis();
            String userName = clientId + "-" + i + "|authMode=aksign"
                    + ",signMethod=" + signMethod
                    + ",timestamp=" + timeStamp
                    + ",authId=" + accessKey
                    + ",iotInstanceId=" + iotInstanceId
                    + ",consumerGroupId=" + consumerGroupId
                    + "|";
            String signContent = "authId=" + accessKey + "&timestamp=" + timeStamp;
            String password = doSign(signContent, accessSecret, signMethod);
            String transport = "amqps://" + host + ":" + port + "?amqp.idleTimeout=80000&amqp.saslMechanisms=PLAIN";
            if (trustStore != null) {
                transport += "&transport.trustStoreLocation=" + trustStore
                        + "&transport.trustStorePassword=" + trustStorePassword
                        + "&transport.trustStoreType=PKCS12";
            }
            String connectionUrl = "failover:(" + transport + ")?failover.reconnectDelay=30";

            Hashtable<String, String> hashtable = new Hashtable<>();
            hashtable.put("connectionfactory.SBCF", connectionUrl);
            hashtable.put("queue.QUEUE", "default");
            hashtable.put(Context.INITIAL_CONTEXT_FACTORY, "org.apache.qpid.jms.jndi.JmsInitialContextFactory");
            Context context = new InitialContext(hashtable);
            ConnectionFactory cf = (ConnectionFactory) context.lookup("SBCF");
            Destination queue = (Destination) context.lookup("QUEUE");
            Connection connection = cf.createConnection(userName, password);
            connections.add(connection);
            Session session = connection.createSession(false, Session.AUTO_ACKNOWLEDGE);
            connection.start();
            MessageConsumer consumer = session.createConsumer(queue);
            consumer.setMessageListener(messageListener);
        }
        System.err.println("sample-java: " + connectionCount + " connection(s) consuming, " + cpus + " cpu(s)");

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            for (Connection connection : connections) {
                try {
                    connection.close();
                } catch (Exception e) {
                    System.err.println("close: " + e);
                }
            }
            executorService.shutdown();
            try {
                executorService.awaitTermination(5, TimeUnit.SECONDS);
            } catch (InterruptedException ignored) {
                Thread.currentThread().interrupt();
            }
            synchronized (out) {
                out.flush();
            }
            System.err.println("sample-java: processed " + processed.get() + " messages");
            stopped.countDown();
        }));
        stopped.await();
    }

    private static void processMessage(Message message) {
        try {
            byte[] body = message.getBody(byte[].class);
            String content = new String(body, StandardCharsets.UTF_8);
            String topic = message.getStringProperty("topic");
            String messageId = message.getStringProperty("messageId");
            long generateTime = message.getLongProperty("generateTime");
            String line = "receive message"
                    + ", topic = " + topic
                    + ", messageId = " + messageId
                    + ", generateTime = " + generateTime
                    + ", content = " + content;
            synchronized (out) {
                out.println(line);
            }
            processed.incrementAndGet();
        } catch (Exception e) {
            System.err.println("processMessage occurs error: " + e);
        }
    }

    /** base64(HMAC-signMethod(key = secret, data = toSignString)), as the sample's doSign. */
    private static String doSign(String toSignString, String secret, String signMethod) throws Exception {
        String algorithm = switch (signMethod.toLowerCase()) {
            case "hmacsha1" -> "HmacSHA1";
            case "hmacsha256" -> "HmacSHA256";
            case "hmacmd5" -> "HmacMD5";
            default -> throw new IllegalArgumentException("unknown signMethod " + signMethod);
        };
        SecretKeySpec signingKey = new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), algorithm);
        Mac mac = Mac.getInstance(algorithm);
        mac.init(signingKey);
        byte[] rawHmac = mac.doFinal(toSignString.getBytes(StandardCharsets.UTF_8));
        return Base64.getEncoder().encodeToString(rawHmac);
    }

    private static Map<String, String> parse(String[] argv) {
        Map<String, String> args = new HashMap<>();
        for (int i = 0; i < argv.length; i++) {
            if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                throw new IllegalArgumentException("expected --flag value pairs, got " + argv[i]);
            }
            args.put(argv[i].substring(2), argv[++i]);
        }
        return args;
    }

    private static String arg(Map<String, String> args, String flag, String fallback) {
        String value = args.get(flag);
        if (value == null) {
            value = System.getenv("IOTSUB_" + flag.toUpperCase().replace('-', '_'));
        }
        if (value == null) {
            value = fallback;
        }
        if (value == null) {
            throw new IllegalArgumentException("--" + flag + " (or IOTSUB_" + flag.toUpperCase().replace('-', '_') + ") is required");
        }
        return value;
    }
}
