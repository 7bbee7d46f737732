//! Dropping root after binding: the real ports (7, 13, 37) need root to bind, serving does not.
//!
//! `--user NAME` (and optionally `--group NAME`) is looked up before any socket exists
//! (`getpwnam_r`, `getgrnam_r`), so a typo fails at once. Once every socket is bound, the
//! process gives up root in the only safe order — `setgroups` (drop root's supplementary
//! groups), `setgid`, then `setuid` (after which it could no longer change its groups) — and
//! then checks that `setuid(0)` fails: if root can be regained, the drop did not happen and the
//! server refuses to start. This runs before the loops' threads exist, and glibc applies
//! `setuid` to every thread anyway.
//!
//! The unprivileged alternatives (no root at all) are socket activation and
//! `setcap cap_net_bind_service=+ep`; see `docs/DEPLOY.md`.

use std::ffi::CString;

/// Whom to become.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub uid: libc::uid_t,
    pub gid: libc::gid_t,
}

/// Looks up `user` (a name, or a numeric uid) and the group to run as: `group` (a name or a
/// numeric gid) or else the user's primary group.
pub fn look_up(user: &str, group: Option<&str>) -> Result<Identity, String> {
    let (uid, primary) = match user.parse::<libc::uid_t>() {
        Ok(uid) => (uid, None),
        Err(_) => {
            let (uid, gid) =
                passwd_entry(user)?.ok_or_else(|| format!("--user: no such user {user:?}"))?;
            (uid, Some(gid))
        }
    };
    let gid = match group {
        Some(group) => match group.parse::<libc::gid_t>() {
            Ok(gid) => gid,
            Err(_) => group_entry(group)?
                .ok_or_else(|| format!("--group: no such group {group:?}"))?,
        },
        None => primary.ok_or_else(|| {
            format!("--user {user}: a numeric uid needs --group (there is no user entry to take a group from)")
        })?,
    };
    Ok(Identity {
        user: user.to_owned(),
        uid,
        gid,
    })
}

/// Becomes `who` for good: `setgroups`, `setgid`, `setuid`, then proves root is gone.
pub fn drop_to(who: &Identity) -> Result<(), String> {
    let os_error = |call: &str| {
        let e = std::io::Error::last_os_error();
        let hint = if e.raw_os_error() == Some(libc::EPERM) {
            " (dropping privileges needs root)"
        } else {
            ""
        };
        format!("cannot become {} ({call}): {e}{hint}", who.user)
    };
    let groups = [who.gid];
    // SAFETY: plain system calls on integers and a one-element array that outlives the call.
    unsafe {
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0 {
            return Err(os_error("setgroups"));
        }
        if libc::setgid(who.gid) != 0 {
            return Err(os_error("setgid"));
        }
        if libc::setuid(who.uid) != 0 {
            return Err(os_error("setuid"));
        }
        if who.uid != 0 && libc::setuid(0) == 0 {
            return Err(format!(
                "still able to regain root after becoming {}: refusing to run",
                who.user
            ));
        }
    }
    Ok(())
}

/// `getpwnam_r`: the uid and primary gid of `name`, or `None` if there is no such user.
fn passwd_entry(name: &str) -> Result<Option<(libc::uid_t, libc::gid_t)>, String> {
    let c_name = CString::new(name).map_err(|_| format!("--user: {name:?} contains a NUL"))?;
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: `entry` is written by getpwnam_r; `result` points at it or is null; the buffer
    // is as long as we say and outlives the call.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut result,
        )
    };
    if rc != 0 {
        return Err(format!(
            "--user {name}: {}",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    Ok((!result.is_null()).then_some((entry.pw_uid, entry.pw_gid)))
}

/// `getgrnam_r`: the gid of `name`, or `None` if there is no such group.
fn group_entry(name: &str) -> Result<Option<libc::gid_t>, String> {
    let c_name = CString::new(name).map_err(|_| format!("--group: {name:?} contains a NUL"))?;
    let mut buffer = vec![0 as libc::c_char; 64 * 1024];
    // SAFETY: as in `passwd_entry`.
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    let rc = unsafe {
        libc::getgrnam_r(
            c_name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut result,
        )
    };
    if rc != 0 {
        return Err(format!(
            "--group {name}: {}",
            std::io::Error::from_raw_os_error(rc)
        ));
    }
    Ok((!result.is_null()).then_some(entry.gr_gid))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_nobody_are_found_and_strangers_are_not() {
        let root = look_up("root", None).unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        let nobody = look_up("nobody", Some("0")).unwrap();
        assert_ne!(nobody.uid, 0);
        assert_eq!(nobody.gid, 0);
        assert!(
            look_up("no-such-user-here", None)
                .unwrap_err()
                .contains("no such user")
        );
        assert!(
            look_up("root", Some("no-such-group-here"))
                .unwrap_err()
                .contains("no such group")
        );
        assert!(
            look_up("65534", None)
                .unwrap_err()
                .contains("needs --group")
        );
        assert!(look_up("ro\0ot", None).unwrap_err().contains("NUL"));
    }
}
