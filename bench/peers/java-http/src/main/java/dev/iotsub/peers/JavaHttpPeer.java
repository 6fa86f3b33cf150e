package dev.iotsub.peers;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Base64;
import java.util.HashMap;
import java.util.Hashtable;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ArrayBlockingQueue;
import java.util.concurrent.CountDownLatch;
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
import javax.jms.Session;
import javax.naming.Context;
import javax.naming.InitialContext;

/**
 * The platform's Java sample (bench/samples/java) extended to forward each message to an HTTP server,
 * the way its users extend it: the sample's connections, signing, URI and MessageListener handing
 * each message to a thread pool; the pool's task POSTs the message with {@code java.net.http.HttpClient}
 * and acknowledges it only after a 2xx.
 *
 * <ul>
 *   <li>Acknowledgement: Qpid JMS's {@code INDIVIDUAL_ACKNOWLEDGE} (session mode 101), not
 *       {@code CLIENT_ACKNOWLEDGE}: the platform allows one receiver link per connection, so the pool's
 *       threads share one session, and {@code CLIENT_ACKNOWLEDGE}'s {@code acknowledge()} would settle
 *       every message the session delivered so far, including those whose POSTs are still in flight.
 *       A non-2xx or a failed request settles the message as {@code modified (delivery-failed)}
 *       ({@code JMS_AMQP_ACK_TYPE} = 4), so the platform redelivers it.
 *   <li>Concurrency: a pool of {@code --concurrency} threads (default 100 per connection, the worker's
 *       default credit), core = max, each doing one blocking {@code send} at a time; a full queue runs
 *       the task in the listener's thread, as in the sample.
 *   <li>HTTP: one {@code HttpClient} (HTTP/1.1, its pool of keep-alive connections), a CloudEvent in
 *       binary mode like the worker's http sink ({@code ce-id} = messageId, {@code ce-subject} = topic,
 *       {@code ce-time} = generateTime, body = the payload).
 * </ul>
 *
 * <p>Flags: those of the sample (--host --port --client-id --connections --access-key-id
 * --access-key-secret --consumer-group-id --instance-id --trust-store --trust-store-password) and
 * --sink-url, --concurrency, --timeout-ms.
 */
public final class JavaHttpPeer {
    /** Qpid JMS: acknowledge() settles this message only. */
    private static final int INDIVIDUAL_ACKNOWLEDGE = 101;
    /** Qpid JMS: JMS_AMQP_ACK_TYPE = MODIFIED_FAILED settles as modified with delivery-failed. */
    private static final int MODIFIED_FAILED = 4;

    private static final AtomicLong acknowledged = new AtomicLong();
    private static final AtomicLong failed = new AtomicLong();

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = parse(argv);
        String host = arg(args, "host", "localhost");
        String port = arg(args, "port", "5671");
        String clientId = arg(args, "client-id", "peer-java-http");
        int connectionCount = Integer.parseInt(arg(args, "connections", "1"));
        String accessKey = arg(args, "access-key-id", null);
        String accessSecret = arg(args, "access-key-secret", null);
        String consumerGroupId = arg(args, "consumer-group-id", "DEFAULT_GROUP");
        String iotInstanceId = arg(args, "instance-id", "");
        String trustStore = arg(args, "trust-store", null);
        String trustStorePassword = arg(args, "trust-store-password", "changeit");
        URI sink = URI.create(arg(args, "sink-url", null));
        int concurrency = Integer.parseInt(arg(args, "concurrency", String.valueOf(100 * connectionCount)));
        Duration timeout = Duration.ofMillis(Long.parseLong(arg(args, "timeout-ms", "30000")));
        String source = "/aliyun/iot/" + iotInstanceId + "/" + consumerGroupId;

        HttpClient http = HttpClient.newBuilder()
                .version(HttpClient.Version.HTTP_1_1)
                .followRedirects(HttpClient.Redirect.NEVER)
                .connectTimeout(Duration.ofSeconds(5))
                .build();
        ThreadPoolExecutor pool = new ThreadPoolExecutor(concurrency, concurrency, 60, TimeUnit.SECONDS,
                new ArrayBlockingQueue<>(50_000), new ThreadPoolExecutor.CallerRunsPolicy());

        List<Connection> connections = new ArrayList<>();
        for (int i = 0; i < connectionCount; i++) {
            long timeStamp = System.currentTimeMillis();
            String userName = clientId + "-" + i + "|authMode=aksign,signMethod=hmacsha1"
                    + ",timestamp=" + timeStamp
                    + ",authId=" + accessKey
                    + ",iotInstanceId=" + iotInstanceId
                    + ",consumerGroupId=" + consumerGroupId
                    + "|";
            String password = hmacSha1("authId=" + accessKey + "&timestamp=" + timeStamp, accessSecret);
            String transport = "amqps://" + host + ":" + port + "?amqp.idleTimeout=80000&amqp.saslMechanisms=PLAIN";
            if (trustStore != null) {
                transport += "&transport.trustStoreLocation=" + trustStore
                        + "&transport.trustStorePassword=" + trustStorePassword
                        + "&transport.trustStoreType=PKCS12";
            }
            Hashtable<String, String> jndi = new Hashtable<>();
            jndi.put("connectionfactory.SBCF", "failover:(" + transport + ")?failover.reconnectDelay=30");
            jndi.put("queue.QUEUE", "default");
            jndi.put(Context.INITIAL_CONTEXT_FACTORY, "org.apache.qpid.jms.jndi.JmsInitialContextFactory");
            Context context = new InitialContext(jndi);
            ConnectionFactory cf = (ConnectionFactory) context.lookup("SBCF");
            Destination queue = (Destination) context.lookup("QUEUE");
            Connection connection = cf.createConnection(userName, password);
            connections.add(connection);
            Session session = connection.createSession(false, INDIVIDUAL_ACKNOWLEDGE);
            connection.start();
            MessageConsumer consumer = session.createConsumer(queue);
            consumer.setMessageListener(message -> pool.execute(() -> forward(http, sink, timeout, source, message)));
        }
        System.err.println("peer-java-http: " + connectionCount + " connection(s), " + concurrency + " thread(s), sink " + sink);

        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            for (Connection connection : connections) {
                try {
                    connection.close();
                } catch (Exception e) {
                    System.err.println("close: " + e);
                }
            }
            pool.shutdownNow();
            System.err.println("peer-java-http: acknowledged " + acknowledged.get() + ", failed " + failed.get());
            stopped.countDown();
        }));
        stopped.await();
    }

    /** POSTs `message` as a CloudEvent; accepts it after a 2xx, else settles it for redelivery. */
    private static void forward(HttpClient http, URI sink, Duration timeout, String source, Message message) {
        boolean delivered = false;
        try {
            HttpRequest.Builder request = HttpRequest.newBuilder(sink)
                    .timeout(timeout)
                    .header("content-type", "application/octet-stream")
                    .header("ce-specversion", "1.0")
                    .header("ce-id", message.getStringProperty("messageId"))
                    .header("ce-source", source)
                    .header("ce-type", "com.aliyun.iot.message");
            String topic = message.getStringProperty("topic");
            if (topic != null && !topic.isEmpty()) {
                request.header("ce-subject", topic);
            }
            if (message.propertyExists("generateTime")) {
                request.header("ce-time", Instant.ofEpochMilli(message.getLongProperty("generateTime")).toString());
            }
            byte[] body = message.getBody(byte[].class);
            HttpResponse<Void> response = http.send(request.POST(HttpRequest.BodyPublishers.ofByteArray(body)).build(),
                    HttpResponse.BodyHandlers.discarding());
            delivered = response.statusCode() / 100 == 2;
            if (!delivered) {
                System.err.println("POST answered " + response.statusCode());
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (Exception e) {
            System.err.println("POST failed: " + e);
        }
        try {
            if (!delivered) {
                message.setIntProperty("JMS_AMQP_ACK_TYPE", MODIFIED_FAILED);
                failed.incrementAndGet();
            } else {
                acknowledged.incrementAndGet();
            }
            message.acknowledge();
        } catch (Exception e) {
            System.err.println("acknowledge failed: " + e);
        }
    }

    /** base64(HMAC-SHA1(key = secret, data = content)), as the sample's doSign. */
    private static String hmacSha1(String content, String secret) throws Exception {
        Mac mac = Mac.getInstance("HmacSHA1");
        mac.init(new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), "HmacSHA1"));
        return Base64.getEncoder().encodeToString(mac.doFinal(content.getBytes(StandardCharsets.UTF_8)));
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
        String value = args.getOrDefault(flag, fallback);
        if (value == null) {
            throw new IllegalArgumentException("--" + flag + " is required");
        }
        return value;
    }
}
