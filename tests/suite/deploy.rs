//! The files in deploy/, checked without a container engine or a cluster: each by the
//! validator that knows its format (hadolint, kubernetes-validate, check-jsonschema with the
//! compose spec, all from the project's venv; a missing validator fails the test, never skips
//! it), and against the rest of the repository: the README's build command, requirements.txt's
//! MLflow, the config each manifest mounts (it passes `stagegate check --offline`), and the
//! port and health routes that config makes the daemon serve.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::daemon::{Daemon, free_port};
use common::{root, venv};
use yaml_rust2::{Yaml, YamlLoader};

/// The Kubernetes version the manifests are validated against.
const KUBERNETES: &str = "1.37.0";

fn validator(name: &str) -> PathBuf {
    let p = venv().join("bin").join(name);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/setup.sh (requirements.txt installs the deploy validators)",
        p.display()
    );
    p
}

fn run(program: &Path, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Run `validate` on the file as shipped (must pass), then on a copy with `from` replaced by
/// `to` (must fail): the validator really judges the file, it is not a no-op.
fn validates(rel: &str, from: &str, to: &str, validate: impl Fn(&str) -> Output) {
    let ok = validate(rel);
    assert!(ok.status.success(), "{rel}:\n{}", text(&ok));
    let original = read(rel);
    assert!(original.contains(from), "{rel} has no {from:?}");
    let dir = tempfile::tempdir().unwrap();
    let name = Path::new(rel).file_name().unwrap();
    let broken = dir.path().join(name);
    std::fs::write(&broken, original.replacen(from, to, 1)).unwrap();
    let bad = validate(broken.to_str().unwrap());
    assert!(
        !bad.status.success(),
        "{rel} with {to:?} passed:\n{}",
        text(&bad)
    );
}

#[test]
fn hadolint_passes_the_dockerfile() {
    let hadolint = validator("hadolint");
    // An unpinned apt-get install without its reasoned ignore is a warning, which fails.
    validates("deploy/Dockerfile", "# hadolint ignore=DL3008\n", "", |f| {
        run(&hadolint, &["--no-color", f])
    });
}

#[test]
fn kubernetes_manifests_validate_strictly() {
    let kv = validator("kubernetes-validate");
    // deploy/kubernetes and its variants one directory down (replicas/).
    let dirs = std::fs::read_dir(root().join("deploy/kubernetes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .chain([root().join("deploy/kubernetes")]);
    let mut files: Vec<String> = dirs
        .flat_map(|d| std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    files.sort();
    assert!(
        files.len() >= 7 && files.contains(&"deploy/kubernetes/replicas/deployment.yaml".into()),
        "{files:?}"
    );
    let mut args = vec!["--strict", "-k", KUBERNETES];
    args.extend(files.iter().map(String::as_str));
    let o = run(&kv, &args);
    assert!(o.status.success(), "{}", text(&o));
    // --strict refuses a key the schema does not have.
    validates(
        "deploy/kubernetes/deployment.yaml",
        "  replicas: 1",
        "  replica: 1",
        |f| run(&kv, &["--strict", "-k", KUBERNETES, f]),
    );
}

#[test]
fn compose_file_follows_the_compose_spec() {
    let cj = validator("check-jsonschema");
    validates(
        "deploy/compose.yaml",
        "condition: service_healthy",
        "condition: service_happy",
        |f| run(&cj, &["--builtin-schema", "vendor.compose-spec", f]),
    );
}

/// The `cargo build …` command on a line, up to a shell operator or comment.
fn cargo_build(line: &str) -> Option<String> {
    let at = line.find("cargo build")?;
    let cmd = line[at..]
        .split(['&', '\\', '#', ';', '|'])
        .next()
        .unwrap_or_default();
    Some(cmd.split_whitespace().collect::<Vec<_>>().join(" "))
}

#[test]
fn the_image_is_built_as_the_readme_says() {
    let dockerfile = read("deploy/Dockerfile");
    let built: Vec<String> = dockerfile
        .lines()
        .filter(|l| l.trim_start().starts_with("RUN"))
        .filter_map(cargo_build)
        .collect();
    assert_eq!(built, ["cargo build --release --locked"], "{dockerfile}");
    let readme: Vec<String> = read("README.md").lines().filter_map(cargo_build).collect();
    assert!(readme.contains(&built[0]), "README builds with {readme:?}");

    // The serving image runs the MLflow the tests run.
    let pinned = |text: &str, prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(str::to_string))
            .unwrap_or_else(|| panic!("no {prefix:?}"))
    };
    assert_eq!(
        pinned(&dockerfile, "ARG MLFLOW_VERSION="),
        pinned(&read("requirements.txt"), "mlflow==")
    );
}

fn yaml(rel: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `map[key]`, looking through YAML merge keys (`<<: *anchor`), which the loader leaves as is.
fn get<'a>(map: &'a Yaml, key: &str) -> &'a Yaml {
    let direct = &map[key];
    if direct.is_badvalue() {
        &map["<<"][key]
    } else {
        direct
    }
}

fn strs(y: &Yaml) -> Vec<&str> {
    y.as_vec()
        .unwrap_or_else(|| panic!("not a list: {y:?}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}")))
        .collect()
}

/// The configs the deployments mount, by name and text.
fn mounted_configs() -> Vec<(String, String)> {
    let compose = &yaml("deploy/compose.yaml")[0];
    let volumes = strs(get(&compose["services"]["stagegate"], "volumes"));
    let source = volumes
        .iter()
        .find_map(|v| v.strip_suffix(":/etc/stagegate/stagegate.toml:ro"))
        .unwrap_or_else(|| panic!("compose mounts no config read-only: {volumes:?}"));
    let compose_config = read(&format!("deploy/{}", source.trim_start_matches("./")));
    let configmap = yaml("deploy/kubernetes/configmap.yaml");
    let k8s_config = configmap[0]["data"]["stagegate.toml"]
        .as_str()
        .expect("the ConfigMap holds stagegate.toml")
        .to_string();
    vec![
        ("compose".into(), compose_config),
        ("kubernetes".into(), k8s_config),
    ]
}

#[test]
fn mounted_configs_pass_the_offline_check_with_the_deployed_environment() {
    for (name, config) in mounted_configs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stagegate.toml");
        std::fs::write(&file, &config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_stagegate"))
            .args(["check", "--offline", "--config"])
            .arg(&file)
            .env_remove("MLFLOW_TRACKING_URI")
            // What the manifests set from their secrets.
            .env("STAGEGATE_SERVER__API_TOKEN", "token")
            .env("STAGEGATE_WEBHOOKS__SECRETS", r#"["0123abcd"]"#)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{name}:\n{stdout}\n{stderr}");
        assert!(!stderr.contains("warning"), "{name}: {stderr}");
        assert!(
            stdout.contains("api token set, 1 webhook secret"),
            "{name}: the secrets' environment is read as the config expects:\n{stdout}"
        );
    }
}

/// The port of `server.listen` in a config text.
fn listen_port(config: &str) -> u16 {
    let c = stagegate::config::from_text(config, "stagegate.toml", [])
        .unwrap_or_else(|e| panic!("{e}"));
    let addr: std::net::SocketAddr = c.server.listen.parse().unwrap();
    assert!(
        addr.ip().is_unspecified(),
        "a container listens on every interface: {addr}"
    );
    addr.port()
}

#[test]
fn manifests_use_the_configs_port_and_health_routes() {
    let configs = mounted_configs();
    let port = listen_port(&configs[0].1);
    assert_eq!(listen_port(&configs[1].1), port);

    let dockerfile = read("deploy/Dockerfile");
    assert!(
        dockerfile.contains(&format!("\nEXPOSE {port}\n")),
        "EXPOSE {port}"
    );
    let health = format!("http://127.0.0.1:{port}/healthz");
    assert!(
        dockerfile.contains(&format!("\"{health}\"]")),
        "HEALTHCHECK {health}"
    );

    let compose = &yaml("deploy/compose.yaml")[0];
    let services = &compose["services"];
    let stagegate = &services["stagegate"];
    assert!(strs(&stagegate["healthcheck"]["test"]).contains(&health.as_str()));
    assert!(
        strs(&stagegate["ports"])
            .iter()
            .any(|p| p.ends_with(&format!(":{port}")))
    );
    let register = strs(&services["webhook-register"]["command"]);
    assert!(
        register.contains(&format!("--url=http://stagegate:{port}/webhooks/mlflow").as_str()),
        "{register:?}"
    );
    // A non-loopback listen needs the token: both services that load the config get it.
    for s in ["stagegate", "webhook-register"] {
        let env = get(&services[s], "environment");
        for key in ["STAGEGATE_SERVER__API_TOKEN", "STAGEGATE_WEBHOOKS__SECRETS"] {
            assert!(!get(env, key).is_badvalue(), "compose {s} sets no {key}");
        }
    }

    let deployment = &yaml("deploy/kubernetes/deployment.yaml")[0];
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"].as_i64(), Some(1));
    assert_eq!(spec["strategy"]["type"].as_str(), Some("Recreate"));
    let container = &spec["template"]["spec"]["containers"][0];
    assert_eq!(
        container["ports"][0]["containerPort"].as_i64(),
        Some(port as i64)
    );
    let port_name = container["ports"][0]["name"].as_str().unwrap();
    let probe = |which: &str| {
        let p = &container[which]["httpGet"];
        assert_eq!(p["port"].as_str(), Some(port_name), "{which}");
        p["path"].as_str().unwrap().to_string()
    };
    let (liveness, readiness) = (probe("livenessProbe"), probe("readinessProbe"));
    assert_eq!(
        (liveness.as_str(), readiness.as_str()),
        ("/healthz", "/readyz")
    );
    let env: Vec<&str> = container["env"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(env.contains(&"STAGEGATE_SERVER__API_TOKEN"), "{env:?}");
    assert!(env.contains(&"STAGEGATE_WEBHOOKS__SECRETS"), "{env:?}");
    let service = &yaml("deploy/kubernetes/service.yaml")[0];
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"].as_str(),
        Some(port_name)
    );

    // The probe paths are the daemon's: alive at once, not ready while MLflow is unreachable.
    let dir = tempfile::tempdir().unwrap();
    let local = free_port();
    let daemon = Daemon::start_text(
        "http://127.0.0.1:9",
        local,
        &configs[1].1,
        &[
            ("STAGEGATE_SERVER__LISTEN", &format!("127.0.0.1:{local}")),
            (
                "STAGEGATE_STATE__PATH",
                dir.path().join("state.db").to_str().unwrap(),
            ),
            ("STAGEGATE_SERVER__API_TOKEN", "token"),
        ],
    );
    let (status, body) = daemon.get(&liveness).expect("liveness answers");
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    daemon.wait_for(
        "readiness to say MLflow is unreachable",
        Duration::from_secs(20),
        || {
            daemon.get(&readiness).is_some_and(|(s, b)| {
                s == 503 && b["error"].as_str().is_some_and(|e| !e.is_empty())
            })
        },
    );
}

/// The secretKeyRef key an env entry named `name` reads, if it is in `env`.
fn secret_key<'a>(env: &'a Yaml, name: &str) -> Option<&'a str> {
    env.as_vec()?
        .iter()
        .find(|e| e["name"].as_str() == Some(name))?["valueFrom"]["secretKeyRef"]["key"]
        .as_str()
}

#[test]
fn the_replicated_manifest_runs_its_replicas_on_one_postgres() {
    let single = &yaml("deploy/kubernetes/deployment.yaml")[0]["spec"];
    let spec = &yaml("deploy/kubernetes/replicas/deployment.yaml")[0]["spec"];
    assert!(
        spec["replicas"].as_i64().unwrap() >= 2,
        "{:?}",
        spec["replicas"]
    );
    // Never fewer ready replicas than asked during a rollout: webhooks always find one.
    assert_eq!(spec["strategy"]["type"].as_str(), Some("RollingUpdate"));
    assert_eq!(
        spec["strategy"]["rollingUpdate"]["maxUnavailable"].as_i64(),
        Some(0)
    );
    let pod = &spec["template"]["spec"];
    let volumes = pod["volumes"].as_vec().unwrap();
    assert!(
        volumes
            .iter()
            .all(|v| v["persistentVolumeClaim"].is_badvalue()),
        "no replica has a volume of its own for state: {volumes:?}"
    );
    let container = &pod["containers"][0];
    let single_container = &single["template"]["spec"]["containers"][0];
    // Everything but the state is the single replica's: image, args, ports, probes, limits.
    for key in [
        "image",
        "args",
        "ports",
        "livenessProbe",
        "readinessProbe",
        "resources",
        "securityContext",
    ] {
        assert_eq!(container[key], single_container[key], "{key}");
    }
    let env = &container["env"];
    let url_key = secret_key(env, "STAGEGATE_STATE__URL").expect("the URL from the Secret");
    let password_key = secret_key(env, "PGPASSWORD").expect("the password from the Secret");
    let secret_doc = read("deploy/kubernetes/secret.yaml");
    for key in [url_key, password_key] {
        assert!(
            secret_doc.contains(key),
            "secret.yaml says nothing of {key}"
        );
    }

    // The ConfigMap's config with that environment: replicas on one database, the password
    // from PGPASSWORD (the server checks it), seeing each other.
    let pg = common::postgres::PgCluster::start();
    pg.create_database("shared");
    let url = pg.create_password_user("sgreplica", "replica-pw", "shared");
    let config = &mounted_configs()[1].1;
    let daemons: Vec<Daemon> = (0..2)
        .map(|_| {
            let port = free_port();
            Daemon::start_text(
                "http://127.0.0.1:9",
                port,
                config,
                &[
                    ("STAGEGATE_SERVER__LISTEN", &format!("127.0.0.1:{port}")),
                    ("STAGEGATE_SERVER__API_TOKEN", "token"),
                    ("STAGEGATE_STATE__URL", &url),
                    ("PGPASSWORD", "replica-pw"),
                ],
            )
        })
        .collect();
    for d in &daemons {
        d.wait_for("both replicas in /status", Duration::from_secs(30), || {
            let s = d.status();
            s["store"]["reachable"] == serde_json::json!(true)
                && s["replicas"].as_array().is_some_and(|r| r.len() == 2)
        });
        let backend = d.status()["store"]["backend"].as_str().unwrap().to_string();
        assert!(backend.starts_with("postgres "), "{backend}");
        assert!(!d.log().contains("replica-pw"), "{}", d.log());
    }
}
