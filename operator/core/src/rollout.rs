//! How a new pod template (a spec change, another credentials Secret or role) rolls the worker pods
//! without passing the group's client cap, pure.
//!
//! The Deployment (`maxSurge: 0`) starts a replacement while the pod it replaces still closes its
//! connection, so a rollout holds one client more than its replicas; the autoscaler keeps one place
//! free for it. Two things make that hold exactly:
//! - at the cap, room is made first: one pod fewer on the old template, and the new template only
//!   once the count is real (the ReplicaSet deletes asynchronously) and no client of ours is closing;
//! - while a replaced pod is still shutting down, the Deployment is paused, so the next pod is
//!   replaced only after the previous one's connection is gone, however long its drain takes.

/// What the reconcile saw.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct View {
    pub autoscaling: bool,
    /// The pod template to apply differs from the Deployment's (a spec change, another credentials source).
    pub rotated: bool,
    /// Pods of an older template still run: the Deployment is replacing them.
    pub replacing: bool,
    /// The Deployment's replicas now, and the replicas to apply.
    pub current: i32,
    pub desired: i32,
    pub running_pods: usize,
    pub terminating_pods: usize,
    /// The platform still lists clients of ours that are closing.
    pub clients_closing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// Keep the Deployment's template (only the count may change).
    Current,
    /// The new pod template.
    New,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub template: Template,
    pub paused: bool,
}

impl Plan {
    /// New credentials wait for room under the cap.
    pub fn making_room(&self, view: &View) -> bool {
        view.rotated && self.template == Template::Current
    }
}

pub fn plan(view: &View) -> Plan {
    let draining = view.terminating_pods > 0 || view.clients_closing;
    let room_not_made = view.desired < view.current || view.running_pods > view.desired.max(0) as usize || draining;
    let template = if view.rotated && view.autoscaling && room_not_made { Template::Current } else { Template::New };
    let rolling = view.replacing || (view.rotated && template == Template::New);
    Plan { template, paused: rolling && view.terminating_pods > 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(rotated: bool, replacing: bool, current: i32, desired: i32, running: usize, terminating: usize) -> View {
        View {
            autoscaling: true,
            rotated,
            replacing,
            current,
            desired,
            running_pods: running,
            terminating_pods: terminating,
            clients_closing: false,
        }
    }

    #[test]
    fn plans() {
        use Template::*;
        // (view) → (template, paused)
        let cases = [
            ("nothing to roll", view(false, false, 5, 5, 5, 0), (New, false)),
            ("a scale-down's pod drains: no rollout, no pause", view(false, false, 4, 4, 4, 1), (New, false)),
            ("rotated at the cap: one pod fewer first", view(true, false, 5, 4, 5, 0), (Current, false)),
            ("the count applied, the ReplicaSet has not deleted yet", view(true, false, 4, 4, 5, 0), (Current, false)),
            ("the removed pod still drains", view(true, false, 4, 4, 4, 1), (Current, false)),
            ("room made: roll", view(true, false, 4, 4, 4, 0), (New, false)),
            ("rolling, a replaced pod drains: pause", view(false, true, 4, 4, 4, 1), (New, true)),
            ("rolling, nothing drains: go on", view(false, true, 4, 4, 4, 0), (New, false)),
        ];
        for (what, v, (template, paused)) in cases {
            assert_eq!(plan(&v), Plan { template, paused }, "{what}");
        }
    }

    #[test]
    fn without_autoscaling_the_pods_roll_at_once_one_drain_at_a_time() {
        let v = View { autoscaling: false, ..view(true, false, 5, 5, 5, 0) };
        assert_eq!(plan(&v), Plan { template: Template::New, paused: false });
        let v = View { autoscaling: false, ..view(false, true, 5, 5, 5, 1) };
        assert!(plan(&v).paused);
    }

    #[test]
    fn clients_still_listed_as_closing_delay_the_roll() {
        let v = View { clients_closing: true, ..view(true, false, 4, 4, 4, 0) };
        let p = plan(&v);
        assert_eq!(p.template, Template::Current);
        assert!(p.making_room(&v));
    }
}
