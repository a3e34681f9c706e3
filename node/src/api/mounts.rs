//! `ContainerSpec.Mounts`: docker's `Mount` objects (bollard's model) read
//! into the domain's mounts and written back from them.

use bollard::models::{
    Mount as WireMount, MountBindOptions, MountBindOptionsPropagationEnum, MountTmpfsOptions,
    MountType, MountVolumeOptions, MountVolumeOptionsDriverConfig,
};
use shoal_core::model::mount::{
    BindOptions, Mount, MountKind, Propagation, TmpfsOptions, VolumeOptions,
};

/// The spec's `Mounts` (absent or null: none). The type is read as a word
/// first, so an unknown one gets dockerd's message, not serde's.
pub fn parse(list: Option<&[WireMount]>) -> Result<Vec<Mount>, String> {
    let list = list.unwrap_or_default();
    if list.len() > shoal_core::model::mount::MAX_MOUNTS {
        return Err(format!(
            "a task may have at most {} mounts, not {}",
            shoal_core::model::mount::MAX_MOUNTS,
            list.len()
        ));
    }
    let mut mounts = Vec::with_capacity(list.len());
    for m in list {
        let kind_word = m.typ.map(|t| t.to_string()).unwrap_or_default();
        let Some(kind) = MountKind::parse(&kind_word) else {
            return Err(format!(
                "invalid mount config for type {kind_word:?}: mount type unknown"
            ));
        };
        mounts.push(from_wire(kind, m.clone()));
    }
    Ok(mounts)
}

fn from_wire(kind: MountKind, m: WireMount) -> Mount {
    Mount {
        kind: Some(kind),
        source: m.source.unwrap_or_default(),
        target: m.target.unwrap_or_default(),
        read_only: m.read_only.unwrap_or(false),
        consistency: m.consistency.unwrap_or_default(),
        bind: m.bind_options.map(|b| BindOptions {
            propagation: b.propagation.and_then(|p| Propagation::parse(p.as_ref())),
            non_recursive: b.non_recursive.unwrap_or(false),
        }),
        volume: m.volume_options.map(|v| {
            let driver = v.driver_config.unwrap_or_default();
            VolumeOptions {
                no_copy: v.no_copy.unwrap_or(false),
                labels: v.labels.unwrap_or_default().into_iter().collect(),
                driver: driver.name.unwrap_or_default(),
                driver_options: driver.options.unwrap_or_default().into_iter().collect(),
            }
        }),
        tmpfs: m.tmpfs_options.map(|t| TmpfsOptions {
            size_bytes: u64::try_from(t.size_bytes.unwrap_or(0)).unwrap_or(u64::MAX),
            mode: u32::try_from(t.mode.unwrap_or(0)).unwrap_or(u32::MAX),
        }),
    }
}

/// One mount as docker's `Mount`.
pub fn to_wire(m: &Mount) -> WireMount {
    let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
    WireMount {
        target: some(&m.target),
        source: some(&m.source),
        typ: m.kind.map(|k| match k {
            MountKind::Bind => MountType::BIND,
            MountKind::Volume => MountType::VOLUME,
            MountKind::Tmpfs => MountType::TMPFS,
        }),
        read_only: m.read_only.then_some(true),
        consistency: some(&m.consistency),
        bind_options: m.bind.as_ref().map(|b| MountBindOptions {
            propagation: b
                .propagation
                .and_then(|p| p.as_str().parse::<MountBindOptionsPropagationEnum>().ok()),
            non_recursive: b.non_recursive.then_some(true),
            ..Default::default()
        }),
        volume_options: m.volume.as_ref().map(|v| MountVolumeOptions {
            no_copy: v.no_copy.then_some(true),
            labels: (!v.labels.is_empty()).then(|| {
                v.labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            }),
            driver_config: (!v.driver.is_empty() || !v.driver_options.is_empty()).then(|| {
                MountVolumeOptionsDriverConfig {
                    name: some(&v.driver),
                    options: (!v.driver_options.is_empty()).then(|| {
                        v.driver_options
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    }),
                }
            }),
            ..Default::default()
        }),
        tmpfs_options: m.tmpfs.as_ref().map(|t| MountTmpfsOptions {
            size_bytes: (t.size_bytes != 0)
                .then(|| i64::try_from(t.size_bytes).unwrap_or(i64::MAX)),
            mode: (t.mode != 0).then_some(i64::from(t.mode)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_mounts_round_trip() {
        let wire = serde_json::json!([
            {"Type": "bind", "Source": "/srv", "Target": "/data", "ReadOnly": true,
             "BindOptions": {"Propagation": "rslave"}},
            {"Type": "volume", "Source": "db-{{.Task.Slot}}", "Target": "/var/lib/db",
             "VolumeOptions": {"NoCopy": true, "Labels": {"a": "b"},
                               "DriverConfig": {"Name": "local", "Options": {"o": "x"}}}},
            {"Type": "tmpfs", "Target": "/scratch", "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 448}}
        ]);
        let typed: Vec<WireMount> = serde_json::from_value(wire.clone()).expect("typed");
        let mounts = parse(Some(&typed)).expect("parses");
        assert_eq!(mounts.len(), 3);
        assert_eq!(mounts[0].kind, Some(MountKind::Bind));
        assert_eq!(
            mounts[0].bind.as_ref().and_then(|b| b.propagation),
            Some(Propagation::RSlave)
        );
        assert_eq!(
            mounts[2].tmpfs,
            Some(TmpfsOptions {
                size_bytes: 1 << 20,
                mode: 0o700
            })
        );
        let back: Vec<WireMount> = mounts.iter().map(to_wire).collect();
        assert_eq!(serde_json::to_value(back).expect("json"), wire);
        assert_eq!(
            parse(Some(&[WireMount {
                typ: Some(MountType::CLUSTER),
                target: Some("/x".into()),
                ..Default::default()
            }])),
            Err("invalid mount config for type \"cluster\": mount type unknown".into())
        );
    }
}
