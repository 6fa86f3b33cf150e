//! A plain fe2o3-amqp consumer for the component tests: what a hand-written client does, with
//! every knob the platform's rules are about.

use fe2o3_amqp::{
    Connection, Receiver, Session, connection::ConnectionHandle, sasl_profile::SaslProfile, session::SessionHandle,
    types::primitives::SimpleValue,
};
use iotsub_aliyun::amqp::{AccessKey, AuthMode, SignMethod, Subscriber, sign_login};

use crate::Emulator;

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub client_id: String,
    pub instance_id: Option<String>,
    pub consumer_group_id: String,
    pub auth_mode: AuthMode,
    pub sign_method: SignMethod,
    pub key: AccessKey,
    /// What the Open frame advertises; `None` advertises nothing.
    pub idle_time_out_ms: Option<u32>,
    pub credit: u32,
    /// The receiver link's max-message-size; `None` advertises no limit.
    pub max_message_size: Option<u64>,
}

impl ClientOptions {
    pub fn demo(client_id: &str) -> Self {
        ClientOptions {
            client_id: client_id.into(),
            instance_id: None,
            consumer_group_id: "DEFAULT_GROUP".into(),
            auth_mode: AuthMode::AkSign,
            sign_method: SignMethod::HmacSha1,
            key: AccessKey { id: "demo".into(), secret: "demo-secret".to_owned().into(), security_token: None },
            idle_time_out_ms: Some(60_000),
            credit: 100,
            max_message_size: None,
        }
    }
}

pub struct Client {
    pub connection: ConnectionHandle<()>,
    pub session: SessionHandle<()>,
}

/// Opens an authenticated connection and a session (no link yet).
pub async fn open(emulator: &Emulator, options: &ClientOptions) -> anyhow::Result<Client> {
    let subscriber = Subscriber {
        client_id: options.client_id.clone(),
        instance_id: options.instance_id.clone(),
        consumer_group_id: options.consumer_group_id.clone(),
        auth_mode: options.auth_mode,
        sign_method: options.sign_method,
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let login = sign_login(&subscriber, &options.key, now as u64)?;
    let mut builder = Connection::builder()
        .container_id(options.client_id.clone())
        .alt_tls_establishment(true)
        .rustls_connector(tokio_rustls::TlsConnector::from(emulator.client_tls()?))
        .sasl_profile(SaslProfile::Plain { username: login.username.into_inner(), password: login.password.into_inner() });
    if let Some(ms) = options.idle_time_out_ms {
        // fe2o3-amqp advertises half of what it is given.
        builder = builder.idle_time_out(ms * 2);
    }
    // The certificate names localhost and any address the emulator listens on besides loopback.
    let ip = emulator.amqp_addr.ip();
    let host = if ip.is_loopback() { "localhost".to_owned() } else { ip.to_string() };
    let url = format!("amqps://{host}:{}", emulator.amqp_addr.port());
    let mut connection = builder.open(url.as_str()).await.map_err(|e| anyhow::anyhow!("open: {e:?}"))?;
    let session = Session::begin(&mut connection).await.map_err(|e| anyhow::anyhow!("begin: {e:?}"))?;
    Ok(Client { connection, session })
}

/// Opens a connection with its one receiver link attached.
pub async fn consumer(emulator: &Emulator, options: &ClientOptions) -> anyhow::Result<(Client, Receiver)> {
    let mut client = open(emulator, options).await?;
    let mut builder = Receiver::builder()
        .name(format!("{}-receiver", options.client_id))
        .source("default")
        .credit_mode(fe2o3_amqp::link::receiver::CreditMode::Auto(options.credit));
    if let Some(size) = options.max_message_size {
        builder = builder.max_message_size(size);
    }
    let receiver = builder.attach(&mut client.session).await.map_err(|e| anyhow::anyhow!("attach: {e:?}"))?;
    Ok((client, receiver))
}

/// A consumer that holds its place in the group's client cap but takes nothing: its receiver
/// link grants no credit (another team's idle consumer, as far as the cap is concerned).
pub async fn idle_consumer(emulator: &Emulator, options: &ClientOptions) -> anyhow::Result<(Client, Receiver)> {
    let mut client = open(emulator, options).await?;
    let receiver = Receiver::builder()
        .name(format!("{}-receiver", options.client_id))
        .source("default")
        .credit_mode(fe2o3_amqp::link::receiver::CreditMode::Manual)
        .attach(&mut client.session)
        .await
        .map_err(|e| anyhow::anyhow!("attach: {e:?}"))?;
    Ok((client, receiver))
}

/// A received message's platform properties.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub message_id: String,
    pub topic: String,
    pub generate_time: i64,
    pub payload: Vec<u8>,
}

/// One application property of a received message, whatever its type.
pub fn property<B>(delivery: &fe2o3_amqp::link::delivery::Delivery<B>, key: &str) -> Option<SimpleValue> {
    delivery.message().application_properties.as_ref()?.0.get(key).cloned()
}

/// Reads the platform's properties of a message of the platform's shape (string messageId, long
/// generateTime, one data section).
pub fn properties(
    delivery: &fe2o3_amqp::link::delivery::Delivery<fe2o3_amqp::types::messaging::Body<fe2o3_amqp::types::primitives::Value>>,
) -> anyhow::Result<Received> {
    let message = delivery.message();
    let props = message.application_properties.as_ref().ok_or_else(|| anyhow::anyhow!("no application properties"))?;
    let string = |key: &str| match props.0.get(key) {
        Some(SimpleValue::String(s)) => Ok(s.clone()),
        other => Err(anyhow::anyhow!("{key} is {other:?}, expected an AMQP string")),
    };
    let generate_time = match props.0.get("generateTime") {
        Some(SimpleValue::Long(t)) => *t,
        other => anyhow::bail!("generateTime is {other:?}, expected an AMQP long"),
    };
    let payload = match &message.body {
        fe2o3_amqp::types::messaging::Body::Data(batch) => batch.iter().flat_map(|d| d.0.to_vec()).collect(),
        other => anyhow::bail!("body is {other:?}, expected one data section"),
    };
    Ok(Received { message_id: string("messageId")?, topic: string("topic")?, generate_time, payload })
}
