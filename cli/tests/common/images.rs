//! The Docker engine for tests that use it, and the image they run: there
//! is no registry, so it is built here, `FROM scratch` with a statically
//! linked shoal-echo, through bollard's build API.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::query_parameters::{
    BuildImageOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;

/// The image of shoal-echo the docker tests run.
pub const IMAGE: &str = "shoal-echo:e2e";

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The engine, or `None` after printing why the test is skipped.
pub fn engine() -> Option<Docker> {
    let docker = Docker::connect_with_local_defaults().ok()?;
    let where_ =
        std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
    match rt().block_on(docker.ping()) {
        Ok(_) => Some(docker),
        Err(_) => {
            println!("skipped: no Docker engine at {where_}");
            None
        }
    }
}

/// shoal-echo linked statically, so that it runs in an empty image. `.ci/run`
/// builds it; a developer's plain `cargo nextest run` builds it here.
pub fn static_echo() -> PathBuf {
    let target = super::shoal_bin()
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_path_buf();
    let bin = target.join("x86_64-unknown-linux-gnu/debug/shoal-echo");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args([
                "build",
                "-p",
                "shoal-chaos",
                "--bin",
                "shoal-echo",
                "--target",
                "x86_64-unknown-linux-gnu",
            ])
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .expect("cargo");
        assert!(status.success(), "building the static shoal-echo failed");
    }
    bin
}

/// Builds the shoal-echo image under `tag`.
pub fn build_image_as(docker: &Docker, tag: &str) {
    let bin = std::fs::read(static_echo()).expect("static shoal-echo");
    let dockerfile = b"FROM scratch\nCOPY shoal-echo /shoal-echo\nENTRYPOINT [\"/shoal-echo\"]\n";
    let context = shoal_node::ustar::archive(&[
        ("Dockerfile", dockerfile, 0o644),
        ("shoal-echo", &bin, 0o755),
    ]);
    build(docker, tag, context);
}

/// Builds the image of a tar `context` under `tag`.
fn build(docker: &Docker, tag: &str, context: Vec<u8>) {
    let opts = BuildImageOptionsBuilder::default().t(tag).rm(true).build();
    rt().block_on(async {
        let mut stream = docker.build_image(opts, None, Some(bollard::body_full(context.into())));
        while let Some(item) = stream.next().await {
            let info = item.expect("image build");
            assert!(
                info.error_detail.is_none(),
                "image build failed: {:?}",
                info.error_detail
            );
        }
    });
}

/// An image with a shell: Debian's statically linked busybox (`.ci/run`
/// installs busybox-static), its applets linked in `/bin`. Returns its tag.
pub fn build_busybox(docker: &Docker) -> String {
    const TAG: &str = "shoal-busybox:e2e";
    let bin = std::fs::read("/bin/busybox").expect("busybox-static is installed (see .ci/run)");
    let dockerfile = b"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n";
    let context =
        shoal_node::ustar::archive(&[("Dockerfile", dockerfile, 0o644), ("busybox", &bin, 0o755)]);
    build(docker, TAG, context);
    TAG.to_string()
}

pub fn build_image(docker: &Docker) {
    build_image_as(docker, IMAGE)
}

/// Containers of a service (all states), by shoal's labels.
pub fn containers(docker: &Docker, service: &str) -> Vec<String> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("com.shoal.service.name={service}")],
    )]);
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&filters)
        .build();
    rt().block_on(docker.list_containers(Some(opts)))
        .expect("list containers")
        .into_iter()
        .filter_map(|c| c.id)
        .collect()
}

/// Removes the test's containers, pass or fail: a killed daemon leaves them running.
pub struct Cleanup(pub Docker, pub Vec<&'static str>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for s in &self.1 {
            for id in containers(&self.0, s) {
                let _ = rt().block_on(self.0.remove_container(
                    &id,
                    Some(RemoveContainerOptionsBuilder::default().force(true).build()),
                ));
            }
        }
    }
}
