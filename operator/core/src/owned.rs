//! Whether an object in the cluster still holds every field the operator applies: the check that
//! makes a hand edit of an owned field (image, env, resources, replicas, labels, annotations…)
//! trigger an apply that undoes it, while leaving alone what others added.
//!
//! Server-side apply's view, on JSON: each field the operator sets must be there with its value;
//! fields it does not set (the API server's defaults, another manager's annotations or env vars)
//! are not its business. Lists of named items (containers, env, volumes, ports) are matched by
//! name; other lists must match item for item. Resource quantities are compared by value, since
//! the API server rewrites them in canonical form (`1000m` is stored as `1`).

use serde::Serialize;
use serde_json::Value;

/// The first field of `want` (as applied) that `have` (as read from the cluster) does not hold, as
/// a JSON pointer; `None` when it holds them all.
pub fn first_difference<T: Serialize>(have: &T, want: &T) -> Option<String> {
    match (serde_json::to_value(have), serde_json::to_value(want)) {
        (Ok(have), Ok(want)) => differs(&have, &want, false, ""),
        _ => Some(String::new()),
    }
}

fn differs(have: &Value, want: &Value, quantity: bool, at: &str) -> Option<String> {
    let here = || Some(if at.is_empty() { "/".to_owned() } else { at.to_owned() });
    match want {
        Value::Null => None,
        Value::Object(fields) if fields.is_empty() => (!matches!(have, Value::Null | Value::Object(_))).then(here).flatten(),
        Value::Array(items) if items.is_empty() => {
            (!(matches!(have, Value::Null) || have.as_array().is_some_and(Vec::is_empty))).then(here).flatten()
        }
        Value::Object(fields) => {
            let Value::Object(have) = have else { return here() };
            fields.iter().find_map(|(key, want)| {
                let in_resources = quantity || matches!(key.as_str(), "limits" | "requests");
                differs(have.get(key).unwrap_or(&Value::Null), want, in_resources, &format!("{at}/{key}"))
            })
        }
        Value::Array(items) => {
            let Value::Array(have) = have else { return here() };
            if items.iter().all(|item| name(item).is_some()) {
                items.iter().find_map(|item| {
                    let key = name(item).unwrap_or_default();
                    match have.iter().find(|h| name(h) == Some(key)) {
                        Some(h) => differs(h, item, false, &format!("{at}[name={key}]")),
                        None => Some(format!("{at}[name={key}]")),
                    }
                })
            } else if have.len() == items.len() {
                have.iter().zip(items).enumerate().find_map(|(i, (h, w))| differs(h, w, false, &format!("{at}/{i}")))
            } else {
                here()
            }
        }
        Value::String(want) if quantity => (!have.as_str().is_some_and(|have| same_quantity(have, want))).then(here).flatten(),
        // The API server leaves out zero values of optional fields (`paused: false`).
        scalar if have.is_null() && is_zero(scalar) => None,
        scalar => (have != scalar).then(here).flatten(),
    }
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

fn name(item: &Value) -> Option<&str> {
    item.get("name")?.as_str()
}

fn same_quantity(a: &str, b: &str) -> bool {
    a == b || matches!((quantity(a), quantity(b)), (Some(a), Some(b)) if (a - b).abs() <= f64::EPSILON * a.abs().max(b.abs()))
}

/// A Kubernetes quantity (`500m`, `1.5Gi`, `2e3`) as a number.
fn quantity(text: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("Pi", 1_125_899_906_842_624.0),
        ("Ei", 1_152_921_504_606_846_976.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    let (number, scale) = SUFFIXES.iter().find_map(|(suffix, scale)| Some((text.strip_suffix(suffix)?, *scale))).unwrap_or((text, 1.0));
    number.parse::<f64>().ok().map(|n| n * scale)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn owned_fields_are_checked_and_others_left_alone() {
        let want = json!({
            "metadata": {"labels": {"app": "w"}, "annotations": {"iotsub.dev/applied": "abc"}},
            "spec": {
                "replicas": 2,
                "paused": false,
                "tolerations": [],
                "containers": [{"name": "worker", "image": "w:1", "env": [{"name": "IOTSUB_CREDIT", "value": "100"}],
                    "resources": {"limits": {"cpu": "1000m", "memory": "256Mi"}}}]
            }
        });
        let edit = |f: &dyn Fn(&mut Value)| {
            let mut have = want.clone();
            f(&mut have);
            have
        };
        // name, the object in the cluster, whether it holds what is applied
        let table: Vec<(&str, Value, bool)> = vec![
            ("as applied", want.clone(), true),
            ("server defaults added", edit(&|h| h["spec"]["containers"][0]["imagePullPolicy"] = json!("IfNotPresent")), true),
            ("another manager's annotation", edit(&|h| h["metadata"]["annotations"]["team.example/owner"] = json!("ops")), true),
            (
                "another manager's env var",
                edit(&|h| h["spec"]["containers"][0]["env"].as_array_mut().unwrap().push(json!({"name": "X", "value": "1"}))),
                true,
            ),
            ("a false flag left out by the server", edit(&|h| h["spec"]["paused"] = Value::Null), true),
            ("quantities in canonical form", edit(&|h| h["spec"]["containers"][0]["resources"]["limits"]["cpu"] = json!("1")), true),
            (
                "an empty list dropped by the server",
                edit(&|h| h["spec"].as_object_mut().unwrap().remove("tolerations").map(|_| ()).unwrap()),
                true,
            ),
            ("image edited", edit(&|h| h["spec"]["containers"][0]["image"] = json!("evil:1")), false),
            ("env value edited", edit(&|h| h["spec"]["containers"][0]["env"][0]["value"] = json!("7")), false),
            ("env var removed", edit(&|h| h["spec"]["containers"][0]["env"] = json!([])), false),
            ("memory limit edited", edit(&|h| h["spec"]["containers"][0]["resources"]["limits"]["memory"] = json!("1Gi")), false),
            ("replicas edited", edit(&|h| h["spec"]["replicas"] = json!(5)), false),
            ("paused by hand", edit(&|h| h["spec"]["paused"] = json!(true)), false),
            ("label edited", edit(&|h| h["metadata"]["labels"]["app"] = json!("x")), false),
            ("label removed", edit(&|h| h["metadata"]["labels"] = json!({})), false),
            ("a toleration added by hand", edit(&|h| h["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}])), false),
        ];
        assert_eq!(
            differs(&table.iter().find(|row| row.0 == "env value edited").unwrap().1, &want, false, "").as_deref(),
            Some("/spec/containers[name=worker]/env[name=IOTSUB_CREDIT]/value"),
            "the difference is named"
        );
        for (name, have, holds) in table {
            assert_eq!(differs(&have, &want, false, "").is_none(), holds, "{name}: {:?}", differs(&have, &want, false, ""));
        }
    }

    #[test]
    fn quantities_compare_by_value() {
        for (a, b, same) in [
            ("1000m", "1", true),
            ("0.5", "500m", true),
            ("1Gi", "1024Mi", true),
            ("2e3", "2k", true),
            ("1G", "1Gi", false),
            ("100m", "1", false),
        ] {
            assert_eq!(same_quantity(a, b), same, "{a} vs {b}");
        }
    }
}
