//! `service create --driver process`: IMAGE is an executable. A relative
//! path names a file under the directory `shoal` runs in, as a shell would,
//! so it is made absolute here; the daemon runs elsewhere.

use std::path::{Component, Path, PathBuf};

use crate::output::InvalidValue;

/// The executable the daemon should run: a bare name (looked up in the
/// daemon's PATH) unchanged, a path made absolute against the current
/// directory and checked to exist.
pub fn resolve(image: &str) -> Result<String, InvalidValue> {
    if !image.contains('/') {
        return Ok(image.to_string());
    }
    let cwd = std::env::current_dir().map_err(|e| {
        InvalidValue(format!(
            "cannot resolve executable {image:?}: no working directory: {e}"
        ))
    })?;
    let path = absolute(&cwd, Path::new(image));
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Ok(path.to_string_lossy().into_owned()),
        Ok(_) => Err(InvalidValue(format!(
            "invalid executable {image:?}: {} is not a file",
            path.display()
        ))),
        Err(_) => Err(InvalidValue(format!(
            "invalid executable {image:?}: no such file {}",
            path.display()
        ))),
    }
}

/// `path` under `cwd`, with `.` and `..` taken out.
fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let mut out = if path.is_absolute() {
        PathBuf::new()
    } else {
        cwd.to_path_buf()
    };
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::commands::executable::absolute;

    #[test]
    fn relative_paths_are_under_the_working_directory() {
        let cwd = Path::new("/home/me/shoal");
        assert_eq!(
            absolute(cwd, Path::new("./target/debug/x")),
            Path::new("/home/me/shoal/target/debug/x")
        );
        assert_eq!(
            absolute(cwd, Path::new("../bin/x")),
            Path::new("/home/me/bin/x")
        );
        assert_eq!(
            absolute(cwd, Path::new("/usr/bin/x")),
            Path::new("/usr/bin/x")
        );
    }
}
