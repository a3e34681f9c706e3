//! The seccomp filter of a task: the syscalls docker's default profile
//! (moby `profiles/seccomp/default.json`) refuses, refused with `EPERM`
//! (`clone3` with `ENOSYS`, so that libc falls back to `clone`, as docker
//! does), unless the task holds the capability that profile names for them.
//! It is a deny-list with docker's effect, not docker's allow-list: a
//! syscall newer than this list is allowed (docs/confinement.md).
//!
//! Compiled to BPF (seccompiler) before the fork; the child only installs it.

use std::collections::BTreeMap;

use caps::Capability;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use crate::confine::caps::has;
use crate::confine::ConfineError;

/// Syscalls allowed only with a capability, as docker's profile allows them.
fn gated() -> Vec<(Capability, Vec<i64>)> {
    use Capability::*;
    let mut admin = vec![
        libc::SYS_bpf,
        libc::SYS_fanotify_init,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fsopen,
        libc::SYS_fspick,
        libc::SYS_lookup_dcookie,
        libc::SYS_mount,
        libc::SYS_mount_setattr,
        libc::SYS_move_mount,
        libc::SYS_name_to_handle_at,
        libc::SYS_open_tree,
        libc::SYS_perf_event_open,
        libc::SYS_quotactl,
        libc::SYS_quotactl_fd,
        libc::SYS_setdomainname,
        libc::SYS_sethostname,
        libc::SYS_setns,
        libc::SYS_syslog,
        libc::SYS_umount2,
        libc::SYS_unshare,
    ];
    admin.sort_unstable();
    let mut list = vec![
        (CAP_SYS_ADMIN, admin),
        (CAP_DAC_READ_SEARCH, vec![libc::SYS_open_by_handle_at]),
        (CAP_SYS_BOOT, vec![libc::SYS_reboot]),
        (CAP_SYS_CHROOT, vec![libc::SYS_chroot]),
        (
            CAP_SYS_MODULE,
            vec![
                libc::SYS_delete_module,
                libc::SYS_init_module,
                libc::SYS_finit_module,
            ],
        ),
        (CAP_SYS_PACCT, vec![libc::SYS_acct]),
        (
            CAP_SYS_PTRACE,
            vec![
                libc::SYS_kcmp,
                libc::SYS_pidfd_getfd,
                libc::SYS_process_madvise,
                libc::SYS_process_vm_readv,
                libc::SYS_process_vm_writev,
                libc::SYS_ptrace,
            ],
        ),
        (
            CAP_SYS_TIME,
            vec![
                libc::SYS_settimeofday,
                libc::SYS_clock_settime,
                libc::SYS_clock_adjtime,
            ],
        ),
        (CAP_SYS_TTY_CONFIG, vec![libc::SYS_vhangup]),
        (
            CAP_SYS_NICE,
            vec![
                libc::SYS_get_mempolicy,
                libc::SYS_mbind,
                libc::SYS_set_mempolicy,
                libc::SYS_move_pages,
            ],
        ),
        (CAP_SYSLOG, vec![libc::SYS_syslog]),
    ];
    #[cfg(target_arch = "x86_64")]
    list.push((CAP_SYS_RAWIO, vec![libc::SYS_iopl, libc::SYS_ioperm]));
    list
}

/// Refused whatever the capabilities (not in docker's profile at all).
fn never() -> Vec<i64> {
    #[allow(unused_mut)]
    let mut list = vec![
        libc::SYS_add_key,
        libc::SYS_keyctl,
        libc::SYS_request_key,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_userfaultfd,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_pivot_root,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
        libc::SYS_nfsservctl,
    ];
    #[cfg(target_arch = "x86_64")]
    list.extend([
        libc::SYS_uselib,
        libc::SYS_ustat,
        libc::SYS_sysfs,
        libc::SYS__sysctl,
    ]);
    list
}

/// The `clone` flags that make namespaces: refused without CAP_SYS_ADMIN.
const NAMESPACE_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
];

/// The `personality` values docker's profile allows.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

fn bad(e: impl std::fmt::Display) -> ConfineError {
    ConfineError::Seccomp(e.to_string())
}

/// The filters for a task holding `capabilities` (a mask, see `caps`),
/// to install in order.
pub fn filters(capabilities: u64) -> Result<Vec<BpfProgram>, ConfineError> {
    let arch = std::env::consts::ARCH.try_into().map_err(bad)?;
    let mut denied: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (cap, calls) in gated() {
        if !has(capabilities, cap) {
            for call in calls {
                denied.insert(call, Vec::new());
            }
        }
    }
    for call in never() {
        denied.insert(call, Vec::new());
    }
    // A syscall some capability allows is not denied by another's list.
    for (cap, calls) in gated() {
        if has(capabilities, cap) {
            for call in calls {
                denied.remove(&call);
            }
        }
    }
    let mut enosys: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    if !has(capabilities, Capability::CAP_SYS_ADMIN) {
        let rules = NAMESPACE_FLAGS
            .iter()
            .map(|&flag| {
                let cond = SeccompCondition::new(
                    0,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::MaskedEq(flag),
                    flag,
                )
                .map_err(bad)?;
                SeccompRule::new(vec![cond]).map_err(bad)
            })
            .collect::<Result<Vec<_>, _>>()?;
        denied.insert(libc::SYS_clone, rules);
        enosys.insert(libc::SYS_clone3, Vec::new());
    }
    let other_personality = PERSONALITIES
        .iter()
        .map(|&p| SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad)?;
    denied.insert(
        libc::SYS_personality,
        vec![SeccompRule::new(other_personality).map_err(bad)?],
    );
    let mut programs = Vec::new();
    for (rules, errno) in [(denied, libc::EPERM), (enosys, libc::ENOSYS)] {
        if rules.is_empty() {
            continue;
        }
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .map_err(bad)?;
        programs.push(BpfProgram::try_from(filter).map_err(bad)?);
    }
    Ok(programs)
}

#[cfg(test)]
mod tests {
    use crate::confine::caps::effective;
    use crate::confine::seccomp::filters;

    #[test]
    fn the_filters_compile_for_the_default_set_and_for_all() {
        let default = filters(effective(&[], &[]).expect("set")).expect("filters");
        assert_eq!(default.len(), 2);
        let all = filters(effective(&["ALL".into()], &[]).expect("set")).expect("filters");
        // With CAP_SYS_ADMIN, clone3 is allowed: only the EPERM filter is left.
        assert_eq!(all.len(), 1);
        assert!(all[0].len() < default[0].len());
    }
}
