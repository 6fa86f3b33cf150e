//! Prometheus metrics of the operator.

use iotsub_crds::{ConsumerGroupSubscription, ConsumerGroupSubscriptionStatus};
use kube::ResourceExt;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlatformLabels {
    pub outcome: String,
}

/// An STS exchange (RRSA) by outcome: `ok`, or the `CredentialsValid` reason it gave.
pub type StsLabels = PlatformLabels;

/// One subscription.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubscriptionLabels {
    pub namespace: String,
    pub name: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Counter,
    pub reconcile_errors: Family<ErrorLabels, Counter>,
    pub reconcile_seconds: Histogram,
    pub platform_calls: Family<PlatformLabels, Counter>,
    pub sts_exchanges: Family<StsLabels, Counter>,
    /// 1 while this process holds the Lease (or runs without leader election).
    pub leader: Gauge,
    /// Secrets held with their data: only those subscriptions reference (crate::secrets).
    pub secrets_held: Gauge,
    /// Server-side applies of worker Deployments (a settled subscription makes none).
    pub deployment_applies: Counter,
    pub backlog: Family<SubscriptionLabels, Gauge>,
    pub desired_replicas: Family<SubscriptionLabels, Gauge>,
    pub connected_clients: Family<SubscriptionLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("iotsub_operator");
        let reconciles = Counter::default();
        let reconcile_errors = Family::<ErrorLabels, Counter>::default();
        let reconcile_seconds = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]);
        let platform_calls = Family::<PlatformLabels, Counter>::default();
        let sts_exchanges = Family::<StsLabels, Counter>::default();
        registry.register("sts_exchanges", "AssumeRoleWithOIDC exchanges for RRSA subscriptions, by outcome", sts_exchanges.clone());
        let leader = Gauge::default();
        let secrets_held = Gauge::default();
        let deployment_applies = Counter::default();
        registry.register("secrets_held", "Referenced Secrets held with their data", secrets_held.clone());
        registry.register("deployment_applies", "Server-side applies of worker Deployments", deployment_applies.clone());
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register("reconcile_errors", "Reconciles that failed, by stage", reconcile_errors.clone());
        registry.register("reconcile_duration_seconds", "Time of one reconcile", reconcile_seconds.clone());
        registry.register("platform_calls", "QueryConsumerGroupStatus calls by outcome", platform_calls.clone());
        registry.register("leader", "1 while this replica is the active one", leader.clone());
        let backlog = Family::<SubscriptionLabels, Gauge>::default();
        let desired_replicas = Family::<SubscriptionLabels, Gauge>::default();
        let connected_clients = Family::<SubscriptionLabels, Gauge>::default();
        registry.register("backlog_messages", "The consumer group's stacked messages, as last read from the platform", backlog.clone());
        registry.register("desired_replicas", "Worker replicas the operator wants", desired_replicas.clone());
        registry.register("connected_clients", "This subscription's clients the platform lists as connected", connected_clients.clone());
        Metrics {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_seconds,
            platform_calls,
            sts_exchanges,
            leader,
            secrets_held,
            deployment_applies,
            backlog,
            desired_replicas,
            connected_clients,
        }
    }
}

impl Metrics {
    /// The subscription's series from its status (`None` before the first one is written).
    pub fn observe_subscription(&self, cgs: &ConsumerGroupSubscription, status: Option<&ConsumerGroupSubscriptionStatus>) {
        let Some(status) = status else {
            return;
        };
        let labels = labels(cgs);
        if let Some(backlog) = &status.backlog {
            self.backlog.get_or_create(&labels).set(backlog.messages);
        }
        self.desired_replicas.get_or_create(&labels).set(i64::from(status.desired_replicas));
        self.connected_clients.get_or_create(&labels).set(i64::from(status.connected_clients));
    }

    /// A deleted subscription's series go with it.
    pub fn forget_subscription(&self, cgs: &ConsumerGroupSubscription) {
        let labels = labels(cgs);
        self.backlog.remove(&labels);
        self.desired_replicas.remove(&labels);
        self.connected_clients.remove(&labels);
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("metrics encode to a String");
        text
    }
}

fn labels(cgs: &ConsumerGroupSubscription) -> SubscriptionLabels {
    SubscriptionLabels { namespace: cgs.namespace().unwrap_or_default(), name: cgs.name_any() }
}
