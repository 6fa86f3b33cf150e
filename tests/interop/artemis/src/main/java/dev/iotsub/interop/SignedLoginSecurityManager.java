package dev.iotsub.interop;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.Base64;
import java.util.HashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

import org.apache.activemq.artemis.core.security.CheckType;
import org.apache.activemq.artemis.core.security.Role;
import org.apache.activemq.artemis.spi.core.security.ActiveMQSecurityManager;

/**
 * Accepts the IoT Platform's signed SASL PLAIN logins (written independently of the Rust signer, from
 * the platform's documentation) for one AccessKey, plus one plain publisher account for the test.
 *
 * <pre>
 * username = clientId|authMode=aksign,signMethod=hmacsha1,timestamp=…,authId=…,consumerGroupId=…|
 * password = base64(HMAC(secret, "authId=…[&amp;securityToken=…]&amp;timestamp=…"))
 * </pre>
 */
public final class SignedLoginSecurityManager implements ActiveMQSecurityManager {
    private final String accessKeyId;
    private final String accessKeySecret;
    private final String publisherUser;
    private final String publisherPassword;
    /** clientIds of accepted signed logins (Artemis validates a login more than once), for the test to read. */
    final Set<String> acceptedClientIds = ConcurrentHashMap.newKeySet();
    final ConcurrentLinkedQueue<String> refusals = new ConcurrentLinkedQueue<>();

    public SignedLoginSecurityManager(String accessKeyId, String accessKeySecret, String publisherUser, String publisherPassword) {
        this.accessKeyId = accessKeyId;
        this.accessKeySecret = accessKeySecret;
        this.publisherUser = publisherUser;
        this.publisherPassword = publisherPassword;
    }

    @Override
    public boolean validateUser(String user, String password) {
        if (user == null || password == null) {
            refusals.add("no credentials");
            return false;
        }
        if (user.equals(publisherUser)) {
            return MessageDigest.isEqual(password.getBytes(StandardCharsets.UTF_8), publisherPassword.getBytes(StandardCharsets.UTF_8));
        }
        String reason = verifySigned(user, password);
        if (reason != null) {
            refusals.add(reason);
            return false;
        }
        acceptedClientIds.add(user.substring(0, user.indexOf('|')));
        return true;
    }

    @Override
    public boolean validateUserAndRole(String user, String password, Set<Role> roles, CheckType checkType) {
        // Authorization is not what this test is about: an authenticated login may do anything.
        return validateUser(user, password);
    }

    /** Returns null when the login is valid, else why not. */
    private String verifySigned(String user, String password) {
        int first = user.indexOf('|');
        if (first <= 0 || !user.endsWith("|") || first == user.length() - 1) {
            return "username is not clientId|params|";
        }
        Map<String, String> params = new HashMap<>();
        for (String pair : user.substring(first + 1, user.length() - 1).split(",")) {
            int eq = pair.indexOf('=');
            if (eq <= 0) {
                return "malformed parameter";
            }
            params.put(pair.substring(0, eq), pair.substring(eq + 1));
        }
        for (String required : new String[] {"authMode", "signMethod", "timestamp", "authId", "consumerGroupId"}) {
            if (!params.containsKey(required)) {
                return "missing " + required;
            }
        }
        if (!accessKeyId.equals(params.get("authId"))) {
            return "unknown authId";
        }
        String algorithm;
        switch (params.get("signMethod").toLowerCase()) {
            case "hmacsha1": algorithm = "HmacSHA1"; break;
            case "hmacsha256": algorithm = "HmacSHA256"; break;
            case "hmacmd5": algorithm = "HmacMD5"; break;
            default: return "unknown signMethod";
        }
        String stringToSign;
        switch (params.get("authMode")) {
            case "aksign":
                stringToSign = "authId=" + params.get("authId") + "&timestamp=" + params.get("timestamp");
                break;
            case "ststoken":
                if (!params.containsKey("securityToken")) {
                    return "ststoken without securityToken";
                }
                stringToSign = "authId=" + params.get("authId") + "&securityToken=" + params.get("securityToken")
                        + "&timestamp=" + params.get("timestamp");
                break;
            default:
                return "unknown authMode";
        }
        try {
            Mac mac = Mac.getInstance(algorithm);
            mac.init(new SecretKeySpec(accessKeySecret.getBytes(StandardCharsets.UTF_8), algorithm));
            String expected = Base64.getEncoder().encodeToString(mac.doFinal(stringToSign.getBytes(StandardCharsets.UTF_8)));
            if (!MessageDigest.isEqual(expected.getBytes(StandardCharsets.UTF_8), password.getBytes(StandardCharsets.UTF_8))) {
                return "signature mismatch";
            }
        } catch (Exception e) {
            return "cannot verify: " + e.getClass().getSimpleName();
        }
        return null;
    }
}
