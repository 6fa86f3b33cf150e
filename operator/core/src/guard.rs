//! Guard rails for tenants. Whoever may create a subscription makes the operator run pods with
//! the Secrets of their namespace in them: with an image of their choosing those Secrets would be
//! theirs, and so would every node a toleration lets the pods onto. The operator's flags say what
//! a subscription may choose; a spec that asks for more is refused (`SpecAllowed=False`) and
//! nothing is created or changed for it.

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};
use iotsub_crds::{ConsumerGroupSubscription, conditions::reason};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::names::{CREDENTIALS_LABEL, CREDENTIALS_LABEL_VALUE};

/// The operator's flag names, for messages that say how to allow what was refused.
pub mod flag {
    pub const ALLOWED_WORKER_IMAGES: &str = "--allowed-worker-images";
    pub const REQUIRE_SECRET_LABEL: &str = "--require-secret-label";
    pub const ALLOW_WORKER_PLACEMENT: &str = "--allow-worker-placement";
    pub const ALLOW_WORKER_POD_ANNOTATIONS: &str = "--allow-worker-pod-annotations";
}

/// What subscriptions may choose for their worker pods.
#[derive(Debug, Clone)]
pub struct Guard {
    /// The operator's `--worker-image`: used when the spec names none, and always allowed.
    pub worker_image: String,
    allowed_images: GlobSet,
    /// `--allowed-worker-images`, as given.
    allowed_patterns: Vec<String>,
    /// Every referenced Secret must carry `iotsub.dev/credentials: "true"`.
    pub require_secret_label: bool,
    /// `spec.worker.nodeSelector` and `tolerations` may be set.
    pub allow_worker_placement: bool,
    /// `spec.worker.podAnnotations` may be set.
    pub allow_pod_annotations: bool,
    /// The worker pods' `imagePullSecrets` (for the operator's own, private, worker image).
    pull_secrets: Vec<String>,
}

/// A pattern of `--allowed-worker-images` that is no glob.
#[derive(Debug, thiserror::Error)]
#[error("{} entry `{pattern}` is not a glob: {source}", flag::ALLOWED_WORKER_IMAGES)]
pub struct PatternError {
    pattern: String,
    #[source]
    source: globset::Error,
}

/// Why a spec is refused; each names the rule and the flag that would allow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    WorkerImage { image: String },
    WorkerPlacement { fields: Vec<&'static str> },
    PodAnnotations,
}

impl Refusal {
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::WorkerImage { .. } => reason::WORKER_IMAGE_NOT_ALLOWED,
            Refusal::WorkerPlacement { .. } => reason::WORKER_PLACEMENT_NOT_ALLOWED,
            Refusal::PodAnnotations => reason::POD_ANNOTATIONS_NOT_ALLOWED,
        }
    }

    pub fn message(&self, guard: &Guard) -> String {
        let unchanged = "nothing was created or changed for this spec";
        match self {
            Refusal::WorkerImage { image } => {
                let allowed = if guard.allowed_patterns.is_empty() { "none".to_owned() } else { guard.allowed_patterns.join(", ") };
                format!(
                    "spec.worker.image {image} is not the operator's worker image {} and matches none of its {} ({allowed}): \
                     a custom image would hold this namespace's credentials; an operator administrator can allow it with {} \
                     or clear spec.worker.image; {unchanged}",
                    guard.worker_image,
                    flag::ALLOWED_WORKER_IMAGES,
                    flag::ALLOWED_WORKER_IMAGES,
                )
            }
            Refusal::WorkerPlacement { fields } => format!(
                "{} may not be set: the operator runs with {}=false (pods of tenants stay off nodes the cluster keeps for others); {unchanged}",
                fields.join(" and "),
                flag::ALLOW_WORKER_PLACEMENT,
            ),
            Refusal::PodAnnotations => format!(
                "spec.worker.podAnnotations may not be set: the operator runs with {}=false (annotations can ask admission webhooks \
                 for sidecars, identities or volumes); {unchanged}",
                flag::ALLOW_WORKER_POD_ANNOTATIONS,
            ),
        }
    }
}

impl Guard {
    /// `allowed_images`: globs over the whole image reference (`registry/path/name:tag` or
    /// `…@sha256:…`); `*` and `?` stop at `/`, `**` crosses it, `[…]` is a class.
    pub fn new(
        worker_image: &str,
        allowed_images: &[String],
        require_secret_label: bool,
        allow_worker_placement: bool,
        allow_pod_annotations: bool,
    ) -> Result<Guard, PatternError> {
        let mut set = GlobSetBuilder::new();
        let mut patterns = Vec::new();
        for pattern in allowed_images.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let glob = image_glob(pattern).map_err(|source| PatternError { pattern: pattern.to_owned(), source })?;
            set.add(glob);
            patterns.push(pattern.to_owned());
        }
        let allowed_images = set.build().map_err(|source| PatternError { pattern: patterns.join(","), source })?;
        Ok(Guard {
            worker_image: worker_image.to_owned(),
            allowed_images,
            allowed_patterns: patterns,
            require_secret_label,
            allow_worker_placement,
            allow_pod_annotations,
            pull_secrets: Vec::new(),
        })
    }

    /// The operator's defaults: only its own image, labelled Secrets, placement and annotations allowed.
    pub fn with_defaults(worker_image: &str) -> Guard {
        Guard::new(worker_image, &[], true, true, true).expect("no pattern, no error")
    }

    /// `names`: the pull Secrets of the worker pods (`--worker-image-pull-secrets`), in each
    /// subscription's namespace.
    #[must_use]
    pub fn with_pull_secrets(mut self, names: &[String]) -> Guard {
        self.pull_secrets = names.iter().map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()).collect();
        self
    }

    pub fn pull_secrets(&self) -> &[String] {
        &self.pull_secrets
    }

    /// The image the worker pods run.
    pub fn image<'a>(&'a self, cgs: &'a ConsumerGroupSubscription) -> &'a str {
        if cgs.spec.worker.image.is_empty() { &self.worker_image } else { &cgs.spec.worker.image }
    }

    pub fn image_allowed(&self, image: &str) -> bool {
        image == self.worker_image || self.allowed_images.is_match(image)
    }

    /// The first rule `cgs` breaks, if any.
    pub fn check(&self, cgs: &ConsumerGroupSubscription) -> Option<Refusal> {
        let image = self.image(cgs);
        if !self.image_allowed(image) {
            return Some(Refusal::WorkerImage { image: image.to_owned() });
        }
        let worker = &cgs.spec.worker;
        if !self.allow_worker_placement {
            let fields: Vec<&'static str> = [
                (!worker.node_selector.is_empty()).then_some("spec.worker.nodeSelector"),
                (!worker.tolerations.is_empty()).then_some("spec.worker.tolerations"),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !fields.is_empty() {
                return Some(Refusal::WorkerPlacement { fields });
            }
        }
        if !self.allow_pod_annotations && !worker.pod_annotations.is_empty() {
            return Some(Refusal::PodAnnotations);
        }
        None
    }

    /// Whether the operator may use a Secret with this metadata: it carries the label, or the
    /// label is not required.
    pub fn secret_usable(&self, secret: &ObjectMeta) -> bool {
        !self.require_secret_label || is_labelled(secret)
    }
}

/// `iotsub.dev/credentials: "true"`.
pub fn is_labelled(secret: &ObjectMeta) -> bool {
    secret.labels.as_ref().and_then(|l| l.get(CREDENTIALS_LABEL)).is_some_and(|v| v == CREDENTIALS_LABEL_VALUE)
}

fn image_glob(pattern: &str) -> Result<Glob, globset::Error> {
    GlobBuilder::new(pattern).literal_separator(true).backslash_escape(true).build()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::Toleration;

    use super::*;
    use crate::fixtures;

    fn guard(allowed: &[&str]) -> Guard {
        Guard::new("registry.example/iotsub/worker:0.1.0", &allowed.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(), true, true, true)
            .expect("valid globs")
    }

    fn with_image(image: &str) -> ConsumerGroupSubscription {
        let mut cgs = fixtures::subscription();
        cgs.spec.worker.image = image.into();
        cgs
    }

    #[test]
    fn only_the_operators_image_or_an_allowed_glob_may_run() {
        let none = guard(&[]);
        let some = guard(&["registry.example/iotsub/*", "registry.example/team-?/worker@sha256:*", "mirror.example/**/iotsub-worker:1.*"]);
        let table: [(&Guard, &str, bool); 11] = [
            (&none, "", true),
            (&none, "registry.example/iotsub/worker:0.1.0", true),
            (&none, "registry.example/iotsub/worker:0.2.0", false),
            (&none, "evil.example/steal:latest", false),
            (&some, "registry.example/iotsub/worker:0.2.0", true),
            (&some, "registry.example/iotsub/nested/worker:1", false),
            (&some, "registry.example/team-a/worker@sha256:abc", true),
            (&some, "registry.example/team-ab/worker@sha256:abc", false),
            (&some, "mirror.example/a/b/iotsub-worker:1.4", true),
            (&some, "mirror.example/a/b/iotsub-worker:2.0", false),
            (&some, "registry.example/iotsub", false),
        ];
        for (guard, image, allowed) in table {
            let refusal = guard.check(&with_image(image));
            assert_eq!(refusal.is_none(), allowed, "{image:?} with {:?}: {refusal:?}", guard.allowed_patterns);
        }
    }

    #[test]
    fn a_refused_image_names_the_rule_and_the_flag() {
        let refusal = guard(&[]).check(&with_image("evil.example/steal:latest")).expect("refused");
        assert_eq!(refusal.reason(), "WorkerImageNotAllowed");
        let message = refusal.message(&guard(&[]));
        for part in ["evil.example/steal:latest", "registry.example/iotsub/worker:0.1.0", "--allowed-worker-images", "(none)"] {
            assert!(message.contains(part), "{part} in {message}");
        }
    }

    #[test]
    fn a_bad_glob_is_an_error_naming_it() {
        let error = Guard::new("w", &["registry.example/[oops".into()], true, true, true).expect_err("unclosed class");
        assert!(error.to_string().contains("--allowed-worker-images entry `registry.example/[oops`"), "{error}");
    }

    #[test]
    fn placement_and_annotations_are_refused_only_when_the_flags_say_so() {
        let mut cgs = fixtures::subscription();
        cgs.spec.worker.node_selector = BTreeMap::from([("pool".into(), "gpu".into())]);
        cgs.spec.worker.tolerations = vec![Toleration { operator: Some("Exists".into()), ..Default::default() }];
        cgs.spec.worker.pod_annotations = BTreeMap::from([("sidecar.example/inject".into(), "true".into())]);
        assert_eq!(Guard::with_defaults("w").check(&cgs), None, "allowed by default");
        let strict = Guard::new("w", &[], true, false, false).expect("guard");
        let refusal = strict.check(&cgs).expect("refused");
        assert_eq!(refusal, Refusal::WorkerPlacement { fields: vec!["spec.worker.nodeSelector", "spec.worker.tolerations"] });
        assert!(refusal.message(&strict).contains("--allow-worker-placement=false"));
        cgs.spec.worker.node_selector.clear();
        cgs.spec.worker.tolerations.clear();
        let refusal = strict.check(&cgs).expect("refused");
        assert_eq!(
            (refusal.reason(), refusal.message(&strict).contains("--allow-worker-pod-annotations=false")),
            ("PodAnnotationsNotAllowed", true)
        );
    }

    #[test]
    fn a_secret_is_usable_with_the_label_or_when_the_label_is_not_required() {
        let meta = |labels: &[(&str, &str)]| ObjectMeta {
            labels: Some(labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()),
            ..Default::default()
        };
        let required = Guard::with_defaults("w");
        assert!(required.secret_usable(&meta(&[("iotsub.dev/credentials", "true")])));
        assert!(!required.secret_usable(&meta(&[("iotsub.dev/credentials", "yes")])));
        assert!(!required.secret_usable(&meta(&[])));
        assert!(!required.secret_usable(&ObjectMeta::default()));
        let lifted = Guard::new("w", &[], false, true, true).expect("guard");
        assert!(lifted.secret_usable(&ObjectMeta::default()));
    }
}
