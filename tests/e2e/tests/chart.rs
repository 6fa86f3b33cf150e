//! The Helm chart `charts/iotsub` with a real helm: lint, what it renders (RBAC per watch mode,
//! the Deployment, the ServiceMonitor, refused values), and an install on the local control plane
//! where the operator runs as its own pod with exactly the chart's ServiceAccount and RBAC.

use std::time::Duration;

use iotsub_e2e::{
    Cluster,
    cluster::kubectl,
    helm::{self, Release, of_kind, template, template_error},
    subscription::{self, all_connected, wait_status},
    workspace_root,
};
use iotsub_tests::wait_until;
use k8s_openapi::api::{
    apps::v1::Deployment,
    authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
    coordination::v1::Lease,
    core::v1::{Pod, ServiceAccount},
    events::v1::Event,
    networking::v1::NetworkPolicy,
    policy::v1::PodDisruptionBudget,
    rbac::v1::{Role, RoleBinding},
    scheduling::v1::PriorityClass,
};
use k8s_openapi::apimachinery::pkg::{apis::meta::v1::ObjectMeta, util::intstr::IntOrString};
use kube::{
    Api, ResourceExt,
    api::{ListParams, PostParams},
};
use serde_json::{Value, json};

/// The rules of the operator's Role (one namespace) or ClusterRole (all namespaces): every API call
/// the operator makes, nothing else.
fn operator_rules() -> Value {
    json!([
        {"apiGroups": ["iotsub.dev"], "resources": ["consumergroupsubscriptions"], "verbs": ["list", "watch"]},
        {"apiGroups": ["iotsub.dev"], "resources": ["consumergroupsubscriptions/status"], "verbs": ["patch"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["list", "watch", "create", "patch"]},
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["list", "watch", "create", "patch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["create", "patch"]},
        {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
    ])
}

/// The leader-election Role in the release namespace.
fn lease_rules() -> Value {
    json!([
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["iotsub-operator"], "verbs": ["get", "patch"]},
    ])
}

fn kinds(objects: &[Value]) -> Vec<String> {
    let mut kinds: Vec<String> = objects.iter().map(|o| o["kind"].as_str().unwrap_or_default().to_owned()).collect();
    kinds.sort();
    kinds
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    of_kind(objects, kind)
        .into_iter()
        .find(|o| o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} among {:?}", kinds(objects)))
}

fn service_account_subject(namespace: &str) -> Value {
    json!([{"kind": "ServiceAccount", "name": "iotsub", "namespace": namespace}])
}

#[test]
fn chart_lints_and_ships_the_generated_crd() -> anyhow::Result<()> {
    let chart = helm::chart_dir();
    let lint = helm::run(&["lint", "--strict", chart.to_str().unwrap()], None)?;
    assert!(lint.success, "helm lint --strict:\n{}{}", lint.stdout, lint.stderr);
    assert!(lint.stdout.contains("1 chart(s) linted, 0 chart(s) failed"), "{}", lint.stdout);
    let show = helm::run(&["show", "chart", chart.to_str().unwrap()], None)?;
    let meta: serde_yaml::Value = serde_yaml::from_str(&show.stdout)?;
    assert_eq!(
        (meta["apiVersion"].as_str(), meta["version"].as_str(), meta["appVersion"].as_str()),
        (Some("v2"), Some("0.1.0"), Some("0.1.0"))
    );
    // The chart's CRD is crdgen's output, byte for byte (crds/ has the drift test against the types).
    let crds = helm::run(&["show", "crds", chart.to_str().unwrap()], None)?;
    let generated = std::fs::read_to_string(workspace_root().join("crds/consumergroupsubscriptions.iotsub.dev.yaml"))?;
    let shipped = crds.stdout.trim().trim_start_matches("---").trim();
    assert!(
        crds.success && shipped == generated.trim(),
        "charts/iotsub/crds is not crds/ as crdgen wrote it: `helm show crds` says\n{}",
        crds.stderr
    );
    Ok(())
}

#[test]
fn all_namespaces_is_a_cluster_role_with_the_operators_rules() -> anyhow::Result<()> {
    let objects = template("iotsub", "iotsub-system", &[])?;
    assert_eq!(
        kinds(&objects),
        ["ClusterRole", "ClusterRoleBinding", "Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"],
        "default values"
    );
    let cluster_role = named(&objects, "ClusterRole", "iotsub-system-iotsub");
    assert_eq!(cluster_role["rules"], operator_rules());
    let binding = named(&objects, "ClusterRoleBinding", "iotsub-system-iotsub");
    assert_eq!(binding["roleRef"], json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "iotsub-system-iotsub"}));
    assert_eq!(binding["subjects"], service_account_subject("iotsub-system"));
    // The Lease stays a namespaced Role in the release namespace even when the rest is cluster-wide.
    let lease_role = named(&objects, "Role", "iotsub-leader-election");
    assert_eq!(lease_role["metadata"]["namespace"], "iotsub-system");
    assert_eq!(lease_role["rules"], lease_rules());
    let lease_binding = named(&objects, "RoleBinding", "iotsub-leader-election");
    assert_eq!(lease_binding["metadata"]["namespace"], "iotsub-system");
    assert_eq!(lease_binding["subjects"], service_account_subject("iotsub-system"));
    let args = &named(&objects, "Deployment", "iotsub")["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(!args.as_array().unwrap().iter().any(|a| a.as_str().unwrap().starts_with("--watch-namespace")), "{args}");
    Ok(())
}

#[test]
fn one_namespace_is_roles_only() -> anyhow::Result<()> {
    let objects = template("iotsub", "iotsub-system", &["--set", "watchNamespace=apps"])?;
    assert_eq!(kinds(&objects), ["Deployment", "Role", "Role", "RoleBinding", "RoleBinding", "Service", "ServiceAccount"]);
    let role = named(&objects, "Role", "iotsub");
    assert_eq!(role["metadata"]["namespace"], "apps", "the operator's rules live in the watched namespace");
    assert_eq!(role["rules"], operator_rules());
    let binding = named(&objects, "RoleBinding", "iotsub");
    assert_eq!(binding["metadata"]["namespace"], "apps");
    assert_eq!(binding["roleRef"], json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "iotsub"}));
    assert_eq!(binding["subjects"], service_account_subject("iotsub-system"), "bound to the account in the release namespace");
    let lease_role = named(&objects, "Role", "iotsub-leader-election");
    assert_eq!(lease_role["metadata"]["namespace"], "iotsub-system");
    assert_eq!(lease_role["rules"], lease_rules());
    let args = &named(&objects, "Deployment", "iotsub")["spec"]["template"]["spec"]["containers"][0]["args"];
    assert!(args.as_array().unwrap().contains(&json!("--watch-namespace=apps")), "{args}");
    assert!(args.as_array().unwrap().contains(&json!("--lease-namespace=iotsub-system")), "{args}");

    // Without leader election there is no Lease to grant.
    let objects = template("iotsub", "iotsub-system", &["--set", "watchNamespace=apps", "--set", "leaderElection.enabled=false"])?;
    assert_eq!(kinds(&objects), ["Deployment", "Role", "RoleBinding", "Service", "ServiceAccount"]);
    Ok(())
}

#[test]
fn the_operator_pod_is_restricted_and_listens_on_its_pod_ip() -> anyhow::Result<()> {
    let objects = template("iotsub", "iotsub-system", &[])?;
    let deployment = named(&objects, "Deployment", "iotsub");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert_eq!(pod["serviceAccountName"], "iotsub");
    assert_eq!(container["image"], "iotsub-operator:0.1.0");
    assert_eq!(container["imagePullPolicy"], "IfNotPresent");
    assert_eq!(
        container["args"],
        json!([
            "--http-addr=$(POD_IP):8080",
            "--worker-image=iotsub-worker:0.1.0",
            "--leader-election=true",
            "--lease-namespace=iotsub-system",
            "--lease-seconds=15",
            "--require-secret-label=true",
            "--allow-worker-placement=true",
            "--allow-worker-pod-annotations=true",
        ])
    );
    let env = container["env"].as_array().unwrap();
    assert_eq!(env[0], json!({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}), "POD_IP before its use");
    assert!(env.contains(&json!({"name": "RUST_LOG", "value": "info"})));
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"], json!({"path": "/healthz", "port": "http"}), "{probe}");
    }
    assert_eq!(container["ports"], json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]));
    assert_eq!(
        pod["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    assert_eq!(
        container["securityContext"],
        json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}})
    );
    assert_eq!(container["resources"], json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}));

    // Every key of the values contract reaches the objects.
    let values = tempfile::NamedTempFile::new()?;
    std::fs::write(
        values.path(),
        r#"
image: {registry: "registry.example/team", tag: "9.9.9", operator: {repository: iotsub-operator, tag: ""}, worker: {repository: custom/worker, tag: "abc1234"}, pullPolicy: Always}
imagePullSecrets: [{name: pull}]
workerImagePullSecrets: [worker-pull, mirror-pull]
watchNamespace: apps
leaderElection: {enabled: true, leaseSeconds: 20}
guardRails: {allowedWorkerImages: ["registry.example/iotsub/*", "mirror.example/**"], requireSecretLabel: false, allowWorkerPlacement: false, allowWorkerPodAnnotations: false}
replicas: 2
logLevel: "debug,kube=info"
httpPort: 9100
resources: {requests: {cpu: 10m}}
metrics: {service: {enabled: false}, serviceMonitor: {enabled: false, interval: 1m, labels: {}}}
nodeSelector: {disk: ssd}
tolerations: [{key: dedicated, operator: Exists, effect: NoSchedule}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]}}}
podAnnotations: {team: iot}
serviceAccount: {create: false, name: existing}
"#,
    )?;
    let objects = template("iotsub", "iotsub-system", &["-f", values.path().to_str().unwrap()])?;
    assert_eq!(kinds(&objects), ["Deployment", "Role", "Role", "RoleBinding", "RoleBinding"], "no ServiceAccount, no Service");
    let deployment = named(&objects, "Deployment", "iotsub");
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert_eq!(deployment["spec"]["template"]["metadata"]["annotations"], json!({"team": "iot"}));
    assert_eq!(pod["serviceAccountName"], "existing");
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "pull"}]));
    assert_eq!(pod["nodeSelector"], json!({"disk": "ssd"}));
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0]["key"],
        "zone"
    );
    assert_eq!(
        (container["image"].as_str(), container["imagePullPolicy"].as_str()),
        (Some("registry.example/team/iotsub-operator:9.9.9"), Some("Always"))
    );
    assert_eq!(
        container["args"],
        json!([
            "--http-addr=$(POD_IP):9100",
            "--worker-image=registry.example/team/custom/worker:abc1234",
            "--worker-image-pull-secrets=worker-pull,mirror-pull",
            "--leader-election=true",
            "--lease-namespace=iotsub-system",
            "--lease-seconds=20",
            "--require-secret-label=false",
            "--allow-worker-placement=false",
            "--allow-worker-pod-annotations=false",
            "--allowed-worker-images=registry.example/iotsub/*,mirror.example/**",
            "--watch-namespace=apps",
        ])
    );
    assert!(container["env"].as_array().unwrap().contains(&json!({"name": "RUST_LOG", "value": "debug,kube=info"})));
    // Helm merges maps with the defaults: the limit stays unless set to null.
    assert_eq!(container["resources"], json!({"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}));
    assert_eq!(named(&objects, "RoleBinding", "iotsub")["subjects"][0]["name"], "existing");
    Ok(())
}

/// The operator's image and the `--worker-image` it passes on, rendered with `--set`s.
fn images(sets: &[&str]) -> anyhow::Result<(String, String)> {
    let extra: Vec<&str> = sets.iter().flat_map(|set| ["--set", *set]).collect();
    let objects = template("iotsub", "iotsub-system", &extra)?;
    let container = &named(&objects, "Deployment", "iotsub")["spec"]["template"]["spec"]["containers"][0];
    let worker = container["args"].as_array().unwrap().iter().filter_map(Value::as_str).find_map(|a| a.strip_prefix("--worker-image="));
    Ok((container["image"].as_str().unwrap_or_default().to_owned(), worker.unwrap_or_default().to_owned()))
}

#[test]
fn image_names_are_registry_repository_and_tag_defaulting_to_the_app_version() -> anyhow::Result<()> {
    let both = |operator: &str, worker: &str| (operator.to_owned(), worker.to_owned());
    // The names `make images` gives, at the chart's appVersion (the crates' version).
    assert_eq!(images(&[])?, both("iotsub-operator:0.1.0", "iotsub-worker:0.1.0"));
    // `make images REGISTRY=…` then `helm install --set image.registry=…`: one prefix for both.
    assert_eq!(
        images(&["image.registry=registry.example.com:5000/team"])?,
        both("registry.example.com:5000/team/iotsub-operator:0.1.0", "registry.example.com:5000/team/iotsub-worker:0.1.0")
    );
    assert_eq!(images(&["image.registry=registry.example.com/"])?.0, "registry.example.com/iotsub-operator:0.1.0", "one slash");
    // One tag for both (e.g. the git commit tag), and per image overrides of it.
    assert_eq!(images(&["image.tag=3f2c1ab"])?, both("iotsub-operator:3f2c1ab", "iotsub-worker:3f2c1ab"));
    assert_eq!(
        images(&["image.tag=3f2c1ab", "image.worker.tag=0.2.0", "image.operator.repository=team/operator"])?,
        both("team/operator:3f2c1ab", "iotsub-worker:0.2.0")
    );
    Ok(())
}

#[test]
fn service_monitor_only_when_enabled() -> anyhow::Result<()> {
    let objects = template("iotsub", "iotsub-system", &[])?;
    assert!(of_kind(&objects, "ServiceMonitor").is_empty(), "off by default");
    let service = named(&objects, "Service", "iotsub-metrics");
    assert_eq!(service["spec"]["ports"], json!([{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]));

    let objects = template(
        "iotsub",
        "iotsub-system",
        &["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.serviceMonitor.labels.release=prom"],
    )?;
    let monitors = of_kind(&objects, "ServiceMonitor");
    assert_eq!(monitors.len(), 1);
    let monitor = monitors[0];
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prom");
    assert_eq!(monitor["spec"]["endpoints"], json!([{"port": "http", "path": "/metrics", "interval": "30s"}]));
    // It selects the metrics Service (whose labels include the selector).
    let selector = monitor["spec"]["selector"]["matchLabels"].as_object().unwrap();
    let service_labels = &named(&objects, "Service", "iotsub-metrics")["metadata"]["labels"];
    assert!(selector.iter().all(|(k, v)| &service_labels[k] == v), "{selector:?} vs {service_labels}");

    let error = template_error(
        "iotsub",
        "iotsub-system",
        &["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.service.enabled=false"],
    )?;
    assert!(error.contains("metrics.service.enabled"), "{error}");
    Ok(())
}

#[test]
fn the_operators_disruption_budget_network_policy_and_priority_are_off_by_default() -> anyhow::Result<()> {
    let objects = template("iotsub", "iotsub-system", &[])?;
    assert!(of_kind(&objects, "PodDisruptionBudget").is_empty() && of_kind(&objects, "NetworkPolicy").is_empty(), "{:?}", kinds(&objects));
    assert_eq!(named(&objects, "Deployment", "iotsub")["spec"]["template"]["spec"].get("priorityClassName"), None);

    let objects =
        template("iotsub", "iotsub-system", &OPTIONS_ON.map(|s| if s == "PRIORITY" { "priorityClassName=iotsub-high" } else { s }))?;
    let operator = named(&objects, "Deployment", "iotsub");
    assert_eq!(operator["spec"]["template"]["spec"]["priorityClassName"], "iotsub-high");
    let selector = &operator["spec"]["selector"];
    let pdb = named(&objects, "PodDisruptionBudget", "iotsub");
    assert_eq!((&pdb["spec"]["maxUnavailable"], &pdb["spec"]["selector"]), (&json!(1), selector));
    let policy = named(&objects, "NetworkPolicy", "iotsub");
    assert_eq!(&policy["spec"]["podSelector"], selector);
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(policy["spec"]["ingress"], json!([{"ports": [{"port": 8080, "protocol": "TCP"}]}]), "only the metrics port");
    let egress = policy["spec"]["egress"].as_array().expect("egress rules");
    let ports = |rule: &Value| rule["ports"].as_array().into_iter().flatten().map(|p| p["port"].as_i64().unwrap_or(0)).collect::<Vec<_>>();
    assert_eq!(egress.iter().map(ports).collect::<Vec<_>>(), [vec![53, 53], vec![443, 6443], vec![443], vec![9090]]);
    assert_eq!(egress[1]["to"], json!([{"ipBlock": {"cidr": "10.96.0.1/32"}}]), "the API server's address when given");
    assert_eq!(egress[3]["to"][0]["podSelector"]["matchLabels"], json!({"app.kubernetes.io/name": "iotsub-worker"}));

    for (set, name) in [
        ("networkPolicy.apiServer.cidrs[0]=somewhere", "/networkPolicy/apiServer/cidrs/0"),
        ("podDisruptionBudget.maxUnavailable=0", "/podDisruptionBudget/maxUnavailable"),
        ("priorityClassName=Not_A_Name", "/priorityClassName"),
    ] {
        let error = template_error("iotsub", "iotsub-system", &["--set", set])?;
        assert!(error.contains(name), "--set {set}: {name:?} not in {error}");
    }
    Ok(())
}

/// The chart's optional objects, all on (`PRIORITY` stands for `priorityClassName=…`).
const OPTIONS_ON: [&str; 8] = [
    "--set",
    "podDisruptionBudget.enabled=true",
    "--set",
    "networkPolicy.enabled=true",
    "--set",
    "networkPolicy.apiServer.cidrs[0]=10.96.0.1/32",
    "--set",
    "PRIORITY",
];

#[test]
fn bad_values_fail_with_a_message_naming_them() -> anyhow::Result<()> {
    for (set, names) in [
        ("leaderElection.enabled=maybe", &["/leaderElection/enabled", "boolean"][..]),
        ("watchNamespaces=apps", &["'watchNamespaces' not allowed"][..]),
        ("metrics.serviceMonitor.enable=true", &["/metrics/serviceMonitor", "'enable' not allowed"][..]),
        ("image.pullPolicy=Sometimes", &["/image/pullPolicy"][..]),
        // The values before image.registry/repository/tag: a whole reference in image.operator.
        ("image.operator=registry.example/iotsub-operator:1", &["/image/operator", "want object"][..]),
        ("image.registry=not a host", &["/image/registry"][..]),
        ("image.tag=v1:2", &["/image/tag"][..]),
        ("image.worker.repository=Upper/Case", &["/image/worker/repository"][..]),
        ("httpPort=0", &["/httpPort"][..]),
        ("watchNamespace=Not_A_Namespace", &["/watchNamespace"][..]),
        ("serviceAccount.nmae=x", &["/serviceAccount", "'nmae' not allowed"][..]),
        ("guardRails.requireSecretLabel=perhaps", &["/guardRails/requireSecretLabel", "boolean"][..]),
        (r"guardRails.allowedWorkerImages={a\,b}", &["/guardRails/allowedWorkerImages"][..]),
    ] {
        let error = template_error("iotsub", "iotsub-system", &["--set", set])?;
        for name in names {
            assert!(error.contains(name), "--set {set}: {name:?} not in {error}");
        }
    }
    // Two operators without a Lease would fight.
    let error = template_error("iotsub", "iotsub-system", &["--set", "replicas=2", "--set", "leaderElection.enabled=false"])?;
    assert!(error.contains("leaderElection.enabled"), "{error}");
    // `helm install` refuses the same way, before it touches any cluster.
    let chart = helm::chart_dir();
    let install =
        helm::run(&["install", "iotsub", chart.to_str().unwrap(), "--dry-run=client", "--set", "leaderElection.enabled=maybe"], None)?;
    assert!(!install.success && install.stderr.contains("/leaderElection/enabled"), "{install:?}");
    Ok(())
}

/// (verb, API group, resource, subresource, namespace, object name); "" for none.
type Access<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, &'a str);

/// Whether the operator's account may do something (a SubjectAccessReview with its groups).
async fn may(
    client: &kube::Client,
    account: &str,
    (verb, group, resource, subresource, namespace, name): Access<'_>,
) -> anyhow::Result<bool> {
    let (sa_namespace, _) = account.split_once(':').unwrap();
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{account}")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{sa_namespace}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.into()),
                verb: Some(verb.into()),
                group: Some(group.into()),
                resource: Some(resource.into()),
                subresource: (!subresource.is_empty()).then(|| subresource.into()),
                name: (!name.is_empty()).then(|| name.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let answer = api.create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

#[tokio::test]
async fn helm_install_runs_the_operator_as_a_pod_with_only_the_charts_rbac() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?; // also applies the CRD from crds/ (the chart's copy is equal)
    let emulator = iotsub_e2e::reach::emulator("").await?;
    let ns = cluster.namespace("e2e-chart").await?;
    let name = format!("iotsub-{}", ns.name); // the full name, so the Deployment and ServiceAccount
    // Only this namespace: other tests' operators share the cluster. `--skip-crds`: the CRD is
    // cluster-wide and shared, and Cluster::connect applied it already.
    let release = Release::install(
        &cluster.kubeconfig,
        &name,
        &ns.name,
        &["--skip-crds", "--set", &format!("watchNamespace={}", ns.name), "--set", "leaderElection.leaseSeconds=5"],
    )
    .await?;

    // The operator runs as its own pod, under the chart's ServiceAccount, and becomes ready.
    let deployments: Api<Deployment> = ns.api();
    wait_until("the operator's Deployment to be available", Duration::from_secs(60), || async {
        let status = deployments.get(&name).await.ok()?.status?;
        (status.ready_replicas == Some(1) && status.available_replicas == Some(1)).then_some(())
    })
    .await?;
    let pods: Api<Pod> = ns.api();
    let selector = format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=operator");
    let operator_pods = pods.list(&ListParams::default().labels(&selector)).await?.items;
    assert_eq!(operator_pods.len(), 1);
    let pod = &operator_pods[0];
    let pod_name = pod.name_any();
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(spec.service_account_name.as_deref(), Some(name.as_str()));
    assert_eq!(spec.containers[0].image.as_deref(), Some(iotsub_e2e::reach::image("operator").as_str()));
    let pod_ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).expect("a pod IP");

    // It holds the Lease in the release namespace, and serves /healthz and /metrics on its pod IP.
    let leases: Api<Lease> = ns.api();
    wait_until("the operator pod to hold the Lease", Duration::from_secs(30), || async {
        let holder = leases.get("iotsub-operator").await.ok()?.spec?.holder_identity?;
        (holder == pod_name).then_some(())
    })
    .await?;
    let health = reqwest::get(format!("http://{pod_ip}:8080/healthz")).await?;
    assert_eq!(health.status().as_u16(), 200);
    let metrics = reqwest::get(format!("http://{pod_ip}:8080/metrics")).await?.text().await?;
    assert!(metrics.lines().any(|l| l == "iotsub_operator_leader 1"), "{metrics}");

    // It reconciles a subscription end to end: real worker pods log in to the emulator.
    subscription::put_secrets(&ns, &emulator).await?;
    subscription::apply(&ns, &subscription::manifest("orders", &emulator, 2)).await?;
    let operator_log = || ns.container_log(&pod_name, "operator");
    let status = match wait_status(&ns, "orders", "2 workers connected", Duration::from_secs(120), all_connected(2)).await {
        Ok(status) => status,
        Err(e) => {
            let log = operator_log().await;
            let warnings: Vec<&str> = log.lines().filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\"")).take(5).collect();
            return Err(e.context(format!("the operator's first warnings:\n{}", warnings.join("\n"))));
        }
    };
    assert_eq!(status.condition("Ready").map(|c| c.status.as_str()), Some("True"));
    assert_eq!(status.condition("CredentialsValid").map(|c| c.reason.as_str()), Some("AcceptedByPlatform"));
    assert_eq!(subscription::emulator_clients(&emulator).await?.len(), 2);
    let events: Api<Event> = ns.api();
    let ours: Vec<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reporting_controller.as_deref() == Some("iotsub-operator"))
        .filter_map(|e| e.reason)
        .collect();
    for reason in ["Created", "AllClientsConnected"] {
        assert!(ours.contains(&reason.to_owned()), "an events.k8s.io Event {reason} among {ours:?}");
    }
    // …and was never refused anything on the way.
    let log = operator_log().await;
    assert!(log.contains("holding the Lease"), "{log}");
    assert!(!log.to_lowercase().contains("forbidden"), "the operator was refused a call:\n{log}");

    // The installed Role is exactly the operator's rules, and the account can do nothing more.
    let roles: Api<Role> = ns.api();
    let role = serde_json::to_value(roles.get(&name).await?.rules)?;
    assert_eq!(role, operator_rules());
    let account = format!("{}:{name}", ns.name);
    let here = ns.name.as_str();
    let allowed = [
        ("list", "iotsub.dev", "consumergroupsubscriptions", "", here, ""),
        ("watch", "iotsub.dev", "consumergroupsubscriptions", "", here, ""),
        ("patch", "iotsub.dev", "consumergroupsubscriptions", "status", here, "orders"),
        ("create", "apps", "deployments", "", here, ""),
        ("patch", "apps", "deployments", "", here, "orders"),
        ("create", "policy", "poddisruptionbudgets", "", here, ""),
        ("patch", "policy", "poddisruptionbudgets", "", here, "orders"),
        ("watch", "", "pods", "", here, ""),
        ("list", "", "secrets", "", here, ""),
        // Exactly the referenced Secrets are read with a get (the watch is metadata only).
        ("get", "", "secrets", "", here, subscription::CREDENTIALS),
        ("watch", "policy", "poddisruptionbudgets", "", here, ""),
        // RRSA: the workers' ServiceAccount made, and a token of it for STS.
        ("create", "", "serviceaccounts", "", here, ""),
        ("patch", "", "serviceaccounts", "", here, "orders"),
        ("create", "", "serviceaccounts", "token", here, "orders"),
        ("create", "events.k8s.io", "events", "", here, ""),
        ("get", "coordination.k8s.io", "leases", "", here, "iotsub-operator"),
        ("patch", "coordination.k8s.io", "leases", "", here, "iotsub-operator"),
    ];
    let denied = [
        ("delete", "", "secrets", "", here, subscription::CREDENTIALS),
        ("create", "", "secrets", "", here, ""),
        ("list", "", "secrets", "", "default", ""),
        ("list", "", "secrets", "", "", ""),
        ("delete", "apps", "deployments", "", here, "orders"),
        ("delete", "policy", "poddisruptionbudgets", "", here, "orders"),
        ("create", "policy", "poddisruptionbudgets", "", "default", ""),
        ("update", "apps", "deployments", "", here, "orders"),
        ("patch", "apps", "deployments", "", "default", "orders"),
        ("create", "apps", "deployments", "", "default", ""),
        ("list", "apps", "deployments", "", "", ""),
        ("patch", "iotsub.dev", "consumergroupsubscriptions", "", here, "orders"),
        ("delete", "iotsub.dev", "consumergroupsubscriptions", "", here, "orders"),
        ("list", "iotsub.dev", "consumergroupsubscriptions", "", "default", ""),
        ("create", "", "pods", "", here, ""),
        ("delete", "", "pods", "", here, ""),
        ("create", "", "events", "", here, ""),
        ("get", "coordination.k8s.io", "leases", "", here, "someone-elses"),
        ("delete", "coordination.k8s.io", "leases", "", here, "iotsub-operator"),
        ("create", "coordination.k8s.io", "leases", "", "default", ""),
        ("list", "", "namespaces", "", "", ""),
        ("delete", "", "serviceaccounts", "", here, "orders"),
        ("create", "", "serviceaccounts", "token", "default", "default"),
        ("create", "", "serviceaccounts", "", "default", ""),
        ("create", "rbac.authorization.k8s.io", "roles", "", here, ""),
    ];
    for access in allowed {
        assert!(may(&cluster.client, &account, access).await?, "may {access:?}");
    }
    for access in denied {
        assert!(!may(&cluster.client, &account, access).await?, "may NOT {access:?}");
    }

    // The all-namespaces rendering (ClusterRole, ClusterRoleBinding) is valid for the API server too
    // (server-side dry run: nothing cluster-wide is created on this shared cluster).
    let cluster_wide = helm::render(&name, &ns.name, &[])?;
    let mut dry_run = std::process::Command::new(kubectl())
        .args(["apply", "--dry-run=server", "-f", "-"])
        .env("KUBECONFIG", &cluster.kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(&mut dry_run.stdin.take().unwrap(), cluster_wide.as_bytes())?;
    let dry_run = dry_run.wait_with_output()?;
    let dry_run_out = String::from_utf8_lossy(&dry_run.stdout);
    assert!(dry_run.status.success(), "kubectl apply --dry-run=server: {}", String::from_utf8_lossy(&dry_run.stderr));
    assert!(
        dry_run_out.contains(&format!("clusterrole.rbac.authorization.k8s.io/{}-{name} created (server dry run)", ns.name)),
        "{dry_run_out}"
    );

    // `helm uninstall` removes the operator and its grants; the subscription's workers are not the
    // chart's and stay.
    release.uninstall().await?;
    let accounts: Api<ServiceAccount> = ns.api();
    let bindings: Api<RoleBinding> = ns.api();
    wait_until("the operator, its account and its grants to be gone", Duration::from_secs(60), || async {
        let gone = deployments.get_opt(&name).await.ok()?.is_none()
            && pods.list(&ListParams::default().labels(&selector)).await.ok()?.items.is_empty()
            && accounts.get_opt(&name).await.ok()?.is_none()
            && roles.list(&ListParams::default()).await.ok()?.items.is_empty()
            && bindings.list(&ListParams::default()).await.ok()?.items.is_empty();
        gone.then_some(())
    })
    .await?;
    assert!(deployments.get_opt("orders").await?.is_some(), "the workers' Deployment belongs to the subscription, not the release");
    Ok(())
}

#[tokio::test]
async fn the_operators_disruption_budget_network_policy_and_priority_are_accepted_by_the_api_server() -> anyhow::Result<()> {
    let cluster = Cluster::connect().await?;
    let ns = cluster.namespace("e2e-chart-options").await?;
    let name = format!("iotsub-{}", ns.name);
    // A PriorityClass of this test's own (cluster-wide, so named after the namespace; deleted below).
    let classes: Api<PriorityClass> = Api::all(cluster.client.clone());
    let class = PriorityClass {
        metadata: ObjectMeta { name: Some(ns.name.clone()), ..Default::default() },
        value: Some(1000),
        ..Default::default()
    };
    classes.create(&PostParams::default(), &class).await?;
    let priority = format!("priorityClassName={}", ns.name);
    let mut args = vec!["--skip-crds".to_owned(), "--set".to_owned(), format!("watchNamespace={}", ns.name)];
    args.extend(OPTIONS_ON.iter().map(|s| if *s == "PRIORITY" { priority.clone() } else { (*s).to_owned() }));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let installed = Release::install(&cluster.kubeconfig, &name, &ns.name, &args).await;
    let result = async {
        let release = installed?;
        // `--wait`: the operator pod was admitted with the class's priority and became ready.
        let pods: Api<Pod> = ns.api();
        let selector = format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=operator");
        let operator = pods.list(&ListParams::default().labels(&selector)).await?.items;
        let spec = operator.first().and_then(|p| p.spec.clone()).expect("the operator pod");
        assert_eq!((spec.priority_class_name.as_deref(), spec.priority), (Some(ns.name.as_str()), Some(1000)));
        let budgets: Api<PodDisruptionBudget> = ns.api();
        let budget = budgets.get(&name).await?;
        assert_eq!(budget.spec.and_then(|s| s.max_unavailable), Some(IntOrString::Int(1)));
        let budget_status = wait_until("the operator's PodDisruptionBudget to count its pod", Duration::from_secs(30), || async {
            let status = budgets.get(&name).await.ok()?.status?;
            (status.expected_pods == Some(1)).then_some(status)
        })
        .await?;
        assert_eq!(budget_status.disruptions_allowed, Some(1), "one healthy pod, maxUnavailable 1");
        let policies: Api<NetworkPolicy> = ns.api();
        let policy = policies.get(&name).await?.spec.expect("a spec");
        assert_eq!(policy.policy_types, Some(vec!["Ingress".to_owned(), "Egress".to_owned()]));
        release.uninstall().await?;
        anyhow::Ok(())
    }
    .await;
    classes.delete(&ns.name, &Default::default()).await?;
    result
}
