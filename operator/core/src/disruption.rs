//! How a subscription's workers ride out voluntary disruption (a node drain, a cluster upgrade):
//! a PodDisruptionBudget that lets one worker go at a time, and pods spread over nodes.

use k8s_openapi::{
    api::{
        core::v1::TopologySpreadConstraint,
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use kube_core::{Resource, ResourceExt};

use crate::desired::{owned_metadata, selector_labels};

/// The node label pods are spread over.
pub const HOSTNAME_TOPOLOGY: &str = "kubernetes.io/hostname";

/// The worker pods' PodDisruptionBudget: named after the subscription, owned by it, one pod at a
/// time. An eviction beyond that waits, so a drain never takes every consumer of the group at once
/// (each worker drains its in-flight messages on SIGTERM first).
pub fn budget(cgs: &impl Resource<DynamicType = ()>) -> PodDisruptionBudget {
    let name = cgs.name_any();
    PodDisruptionBudget {
        metadata: owned_metadata(cgs),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(selector_labels(&name)), ..Default::default() }),
            ..Default::default()
        }),
        status: None,
    }
}

/// Whether the budget in the cluster (`None`: there is none) must be applied: missing, or a field
/// the operator owns edited by hand (level-triggered like the Deployment, see [`crate::owned`]).
pub fn needs_apply(have: Option<&PodDisruptionBudget>, want: &PodDisruptionBudget) -> bool {
    have.is_none_or(|have| crate::owned::first_difference(have, want).is_some())
}

/// Worker pods spread over nodes where the scheduler can (`ScheduleAnyway`: a one-node cluster,
/// or a nodeSelector naming one node, still runs every replica).
pub(crate) fn spread(subscription: &str) -> Vec<TopologySpreadConstraint> {
    vec![TopologySpreadConstraint {
        max_skew: 1,
        topology_key: HOSTNAME_TOPOLOGY.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(LabelSelector { match_labels: Some(selector_labels(subscription)), ..Default::default() }),
        ..Default::default()
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::subscription;

    #[test]
    fn a_missing_or_edited_budget_is_applied_again() {
        let want = budget(&subscription());
        assert!(needs_apply(None, &want), "deleted by hand");
        assert!(!needs_apply(Some(&want), &want));
        let mut edited = want.clone();
        edited.spec.as_mut().unwrap().max_unavailable = Some(IntOrString::Int(5));
        assert!(needs_apply(Some(&edited), &want), "maxUnavailable edited");
        let mut with_status = want.clone();
        with_status.status = Some(Default::default());
        with_status.metadata.resource_version = Some("7".into());
        assert!(!needs_apply(Some(&with_status), &want), "what the API server adds is not an edit");
    }

    #[test]
    fn the_budget_lets_one_worker_of_the_subscription_go_at_a_time() {
        let cgs = subscription();
        let pdb = budget(&cgs);
        assert_eq!(pdb.metadata.name.as_deref(), Some(cgs.name_any().as_str()));
        assert_eq!(pdb.metadata.namespace, cgs.namespace());
        let spec = pdb.spec.expect("a spec");
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None, "maxUnavailable alone: it holds at any replica count");
        let selector = spec.selector.and_then(|s| s.match_labels).expect("a selector");
        assert_eq!(
            selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
            crate::names::selector(&cgs.name_any()),
            "the same pods as status.selector"
        );
    }

    #[test]
    fn the_budget_is_owned_by_the_subscription_so_it_goes_with_it() {
        let cgs = subscription();
        let owners = budget(&cgs).metadata.owner_references.expect("owner references");
        assert_eq!(owners.len(), 1);
        assert_eq!((owners[0].kind.as_str(), owners[0].name.as_str()), ("ConsumerGroupSubscription", cgs.name_any().as_str()));
        assert_eq!(owners[0].controller, Some(true));
    }

    #[test]
    fn workers_spread_over_nodes_but_are_never_left_unscheduled_for_it() {
        let [constraint] = spread("orders").try_into().expect("one constraint");
        assert_eq!((constraint.topology_key.as_str(), constraint.max_skew), (HOSTNAME_TOPOLOGY, 1));
        assert_eq!(constraint.when_unsatisfiable, "ScheduleAnyway");
        let selector = constraint.label_selector.and_then(|s| s.match_labels).expect("a selector");
        assert_eq!(selector.get(crate::names::INSTANCE_LABEL).map(String::as_str), Some("orders"));
        assert_eq!(selector.get(crate::names::NAME_LABEL).map(String::as_str), Some(crate::names::WORKER_NAME));
    }

    #[test]
    fn the_worker_deployment_carries_the_spread() {
        let cgs = subscription();
        let deployment = crate::desired::deployment(&cgs, 2, false, crate::desired::pod_template(&cgs, "iotsub-worker", &[]));
        let pod = deployment.spec.and_then(|s| s.template.spec).expect("a pod spec");
        assert_eq!(pod.topology_spread_constraints, Some(spread(&cgs.name_any())));
    }
}
