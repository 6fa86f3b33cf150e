package dev.iotsub.peers;

import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.Base64;
import java.util.HashMap;
import java.util.Map;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

import io.vertx.ext.web.client.WebClientOptions;
import jakarta.jms.Message;
import jakarta.jms.Session;
import org.apache.camel.Exchange;
import org.apache.camel.builder.RouteBuilder;
import org.apache.camel.component.amqp.AMQPComponent;
import org.apache.camel.component.jms.DefaultJmsMessageListenerContainer;
import org.apache.camel.component.jms.JmsEndpoint;
import org.apache.camel.component.jms.JmsMessage;
import org.apache.camel.component.jms.MessageListenerContainerFactory;
import org.apache.camel.main.Main;
import org.apache.camel.support.SynchronizationAdapter;
import org.apache.qpid.jms.JmsConnectionFactory;

/**
 * Apache Camel 4 as teams use it for "AMQP in, HTTP out": camel-main, camel-amqp (Qpid JMS) with the
 * platform's signed credentials, camel-vertx-http out, each message acknowledged only after its
 * exchange completed with a 2xx.
 *
 * <p>One route per connection: {@code amqpN:queue:default} → a processor that builds the CloudEvent
 * headers (as the worker's http sink does) → {@code vertx-http:<sink>}. Choices, for throughput:
 *
 * <ul>
 *   <li>The platform allows one receiver link per connection, so {@code concurrentConsumers} must stay 1
 *       (a second consumer on the container's shared connection is refused). Concurrency comes from
 *       {@code asyncConsumer=true} with the non-blocking vertx-http producer: the consumer takes the
 *       next message while earlier POSTs are in flight, on Vert.x's pool of keep-alive connections
 *       ({@code maxPoolSize} = {@code --concurrency}, default 100 per connection, the worker's default
 *       credit).
 *   <li>Acknowledgement: with {@code asyncConsumer} Spring's listener container acknowledges
 *       ({@code CLIENT_ACKNOWLEDGE}, and any vendor mode too) when the listener returns, before the
 *       POST, and {@code transacted} forces synchronous processing. So the session uses Qpid JMS's
 *       {@code INDIVIDUAL_ACKNOWLEDGE} ({@code acknowledgementMode=101}), the container is Camel's
 *       own with its acknowledgement left out ({@link DeferredAckContainer}, plugged in with
 *       {@code consumerType=Custom}), and an on-completion hook acknowledges the message when its
 *       exchange completed, or settles it {@code modified (delivery-failed)} when it failed (a
 *       non-2xx fails it: {@code throwExceptionOnFailure}).
 *   <li>Credentials: one {@code JmsConnectionFactory} per connection, its username and password
 *       signed once when it is made, as the platform's guide does.
 * </ul>
 *
 * <p>Flags: --host --port --client-id --connections --access-key-id --access-key-secret
 * --consumer-group-id --instance-id --trust-store --trust-store-password --sink-url --concurrency.
 */
public final class CamelPeer {
    /** Qpid JMS: acknowledge() settles this message only. */
    private static final int INDIVIDUAL_ACKNOWLEDGE = 101;
    /** Qpid JMS: JMS_AMQP_ACK_TYPE = MODIFIED_FAILED settles as modified with delivery-failed. */
    private static final int MODIFIED_FAILED = 4;

    public static void main(String[] argv) throws Exception {
        Map<String, String> args = parse(argv);
        String host = arg(args, "host", "localhost");
        String port = arg(args, "port", "5671");
        String clientId = arg(args, "client-id", "peer-camel");
        int connections = Integer.parseInt(arg(args, "connections", "1"));
        String accessKey = arg(args, "access-key-id", null);
        String accessSecret = arg(args, "access-key-secret", null);
        String group = arg(args, "consumer-group-id", "DEFAULT_GROUP");
        String instance = arg(args, "instance-id", "");
        String trustStore = arg(args, "trust-store", null);
        String trustStorePassword = arg(args, "trust-store-password", "changeit");
        String sinkUrl = arg(args, "sink-url", null);
        int concurrency = Integer.parseInt(arg(args, "concurrency", String.valueOf(100 * connections)));
        String source = "/aliyun/iot/" + instance + "/" + group;

        String uri = "failover:(amqps://" + host + ":" + port + "?amqp.idleTimeout=80000&amqp.saslMechanisms=PLAIN"
                + (trustStore == null ? "" : "&transport.trustStoreLocation=" + trustStore
                        + "&transport.trustStorePassword=" + trustStorePassword + "&transport.trustStoreType=PKCS12")
                + ")?failover.reconnectDelay=30";

        Main main = new Main();
        main.bind("deferredAck", (MessageListenerContainerFactory) DeferredAckContainer::new);
        main.bind("webClientOptions", new WebClientOptions().setMaxPoolSize(concurrency).setKeepAlive(true));
        main.configure().withShutdownTimeout(5);
        main.configure().addRoutesBuilder(new RouteBuilder() {
            @Override
            public void configure() throws Exception {
                for (int i = 0; i < connections; i++) {
                    getContext().addComponent("amqp" + i,
                            new AMQPComponent(signedFactory(uri, clientId + "-" + i, accessKey, accessSecret, instance, group)));
                    from("amqp" + i + ":queue:default?asyncConsumer=true&acknowledgementMode=" + INDIVIDUAL_ACKNOWLEDGE
                            + "&consumerType=Custom&messageListenerContainerFactory=#deferredAck")
                            .routeId("forward-" + i)
                            .process(exchange -> toCloudEvent(exchange, source))
                            .to("vertx-http:" + sinkUrl + "?httpMethod=POST&webClientOptions=#webClientOptions");
                }
            }
        });
        System.err.println("peer-camel: " + connections + " connection(s), " + concurrency + " requests in flight at most, sink " + sinkUrl);
        main.run();
    }

    /** Registers the acknowledgement and replaces the JMS headers with the CloudEvent's. */
    private static void toCloudEvent(Exchange exchange, String source) throws Exception {
        Message jms = exchange.getIn(JmsMessage.class).getJmsMessage();
        exchange.getExchangeExtension().addOnCompletion(new SynchronizationAdapter() {
            @Override
            public void onComplete(Exchange done) {
                settle(jms, false);
            }

            @Override
            public void onFailure(Exchange done) {
                settle(jms, true);
            }
        });
        org.apache.camel.Message in = exchange.getIn();
        in.removeHeaders("*");
        in.setHeader(Exchange.CONTENT_TYPE, "application/octet-stream");
        in.setHeader("ce-specversion", "1.0");
        in.setHeader("ce-id", jms.getStringProperty("messageId"));
        in.setHeader("ce-source", source);
        in.setHeader("ce-type", "com.aliyun.iot.message");
        String topic = jms.getStringProperty("topic");
        if (topic != null && !topic.isEmpty()) {
            in.setHeader("ce-subject", topic);
        }
        if (jms.propertyExists("generateTime")) {
            in.setHeader("ce-time", Instant.ofEpochMilli(jms.getLongProperty("generateTime")).toString());
        }
        in.setBody(jms.getBody(byte[].class));
    }

    /**
     * Camel's listener container, except that it never acknowledges: Spring acknowledges every
     * non-transacted session whose mode is not AUTO or DUPS_OK (INDIVIDUAL_ACKNOWLEDGE included)
     * as soon as the listener returns, which with {@code asyncConsumer} is before the POST.
     */
    static final class DeferredAckContainer extends DefaultJmsMessageListenerContainer {
        DeferredAckContainer(JmsEndpoint endpoint) {
            super(endpoint);
        }

        @Override
        protected void commitIfNecessary(Session session, Message message) {
            // The exchange's on-completion hook settles the message.
        }
    }

    private static void settle(Message jms, boolean failed) {
        try {
            if (failed) {
                jms.setIntProperty("JMS_AMQP_ACK_TYPE", MODIFIED_FAILED);
            }
            jms.acknowledge();
        } catch (Exception e) {
            System.err.println("acknowledge failed: " + e);
        }
    }

    private static JmsConnectionFactory signedFactory(String uri, String clientId, String accessKey, String secret,
            String instance, String group) throws Exception {
        long timestamp = System.currentTimeMillis();
        JmsConnectionFactory factory = new JmsConnectionFactory(uri);
        factory.setUsername(clientId + "|authMode=aksign,signMethod=hmacsha1,timestamp=" + timestamp + ",authId=" + accessKey
                + ",iotInstanceId=" + instance + ",consumerGroupId=" + group + "|");
        Mac mac = Mac.getInstance("HmacSHA1");
        mac.init(new SecretKeySpec(secret.getBytes(StandardCharsets.UTF_8), "HmacSHA1"));
        factory.setPassword(Base64.getEncoder().encodeToString(
                mac.doFinal(("authId=" + accessKey + "&timestamp=" + timestamp).getBytes(StandardCharsets.UTF_8))));
        return factory;
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
