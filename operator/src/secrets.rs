//! The Secrets subscriptions reference, read with a `get` and nothing more.
//!
//! The operator watches Secrets' metadata only (names, labels, resource versions: no data, no
//! annotations, which `kubectl apply` fills with a copy of the data), so a cluster full of
//! unrelated Secrets costs it next to no memory and a leaked cache holds no secret. A referenced
//! Secret is fetched when its resource version in the metadata cache changes, and the copy is
//! dropped once no reconcile has asked for it for a while.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::{api::core::v1::Secret, apimachinery::pkg::apis::meta::v1::ObjectMeta};
use kube::{
    Api, ResourceExt,
    core::PartialObjectMeta,
    runtime::reflector::{ObjectRef, Store},
};

/// A fetched Secret no reconcile asked for in this long is dropped (every subscription is
/// reconciled at least once a minute).
const UNUSED_FOR: Duration = Duration::from_secs(10 * 60);

struct Fetched {
    resource_version: Option<String>,
    secret: Arc<Secret>,
    used: Instant,
}

pub struct Secrets {
    client: kube::Client,
    metadata: Store<PartialObjectMeta<Secret>>,
    fetched: Mutex<HashMap<ObjectRef<Secret>, Fetched>>,
}

impl Secrets {
    pub fn new(client: kube::Client, metadata: Store<PartialObjectMeta<Secret>>) -> Secrets {
        Secrets { client, metadata, fetched: Mutex::default() }
    }

    /// The Secret `name` of `namespace`: `None` when the metadata cache has no such Secret; its
    /// metadata alone (no data fetched) when `usable` refuses it (the guard's label rule).
    pub async fn get(&self, namespace: &str, name: &str, usable: impl Fn(&ObjectMeta) -> bool) -> Result<Option<Arc<Secret>>, kube::Error> {
        let key = ObjectRef::<Secret>::new(name).within(namespace);
        let Some(meta) = self.metadata.get(&ObjectRef::new(name).within(namespace)) else {
            self.lock().remove(&key);
            return Ok(None);
        };
        if !usable(&meta.metadata) {
            self.lock().remove(&key);
            return Ok(Some(Arc::new(Secret { metadata: meta.metadata.clone(), ..Secret::default() })));
        }
        let version = meta.resource_version();
        if let Some(fetched) = self.lock().get_mut(&key).filter(|f| f.resource_version == version) {
            fetched.used = Instant::now();
            return Ok(Some(fetched.secret.clone()));
        }
        let Some(secret) = Api::<Secret>::namespaced(self.client.clone(), namespace).get_opt(name).await? else {
            self.lock().remove(&key);
            return Ok(None);
        };
        let secret = Arc::new(secret);
        let now = Instant::now();
        let mut fetched = self.lock();
        fetched.retain(|_, f| now.duration_since(f.used) < UNUSED_FOR);
        fetched.insert(key, Fetched { resource_version: secret.resource_version(), secret: secret.clone(), used: now });
        Ok(Some(secret))
    }

    /// How many Secrets are held with their data.
    pub fn held(&self) -> usize {
        self.lock().len()
    }

    /// Holds `secret` as if fetched (tests: a reconcile against a mocked API server makes no `get`).
    #[cfg(test)]
    pub fn hold(&self, secret: Secret) {
        let key = ObjectRef::from_obj(&secret);
        let fetched = Fetched { resource_version: secret.resource_version(), secret: Arc::new(secret), used: Instant::now() };
        self.lock().insert(key, fetched);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectRef<Secret>, Fetched>> {
        self.fetched.lock().expect("secrets lock")
    }
}

/// What the metadata cache keeps of a Secret: no managed fields and no annotations.
pub fn strip(meta: &mut PartialObjectMeta<Secret>) {
    meta.managed_fields_mut().clear();
    meta.annotations_mut().clear();
}
