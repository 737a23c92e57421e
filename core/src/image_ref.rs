//! Image references (`[registry[:port]/]repository[:tag][@digest]`), parsed by hand against the
//! distribution project's grammar and normalised the way Docker does (`nginx` →
//! `docker.io/library/nginx:latest`).
//!
//! Written out rather than matched with a regular expression: the grammar's one regex, compiled
//! with Unicode classes, held about 7 MiB of the panel's heap from the first app created until
//! the process exited (measured with heaptrack; `bench/apps.py` prints the panel's memory).

use std::fmt;

/// The longest `registry/repository` Docker accepts.
const NAME_MAX: usize = 255;
/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
const TAG_MAX: usize = 128;
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_LEGACY: &str = "index.docker.io";

/// Why a reference does not parse; shown to people after the reference itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefError {
    Empty,
    Registry(String),
    Repository(String),
    Uppercase(String),
    NameTooLong,
    Tag(String),
    Digest(String),
}

impl fmt::Display for RefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefError::Empty => write!(f, "the repository name is missing"),
            RefError::Registry(r) => write!(
                f,
                "{r:?} is not a registry host (letters, digits and '-' between dots, then an optional :port)"
            ),
            RefError::Repository(p) => write!(
                f,
                "{p:?} is not a repository path component (lower-case letters and digits, joined by '.', '_', '__' or dashes)"
            ),
            RefError::Uppercase(p) => write!(f, "repository names are lower case ({p:?})"),
            RefError::NameTooLong => {
                write!(f, "registry and repository together exceed {NAME_MAX} characters")
            }
            RefError::Tag(t) => write!(
                f,
                "{t:?} is not a tag (up to {TAG_MAX} letters, digits, '_', '.' and '-', not starting with '.' or '-')"
            ),
            RefError::Digest(why) => write!(f, "{why}"),
        }
    }
}

/// A parsed, normalised image reference (`registry/repository[:tag][@digest]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    /// `registry/repository`, what Docker's pull API calls `fromImage`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The full normalised reference.
    pub fn whole(&self) -> String {
        let mut s = self.name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d);
        }
        s
    }

    /// The reference the engine keeps the pulled image under: `name@digest` when pinned, else
    /// `name:tag` (`latest` without one).
    pub fn local(&self) -> String {
        match &self.digest {
            Some(d) => format!("{}@{d}", self.name()),
            None => format!(
                "{}:{}",
                self.name(),
                self.tag.as_deref().unwrap_or("latest")
            ),
        }
    }

    /// The same image pinned to a digest (tag dropped), for reproducible rollbacks.
    pub fn pinned(&self, digest: &str) -> ImageRef {
        ImageRef {
            tag: None,
            digest: Some(digest.to_owned()),
            ..self.clone()
        }
    }
}

impl std::str::FromStr for ImageRef {
    type Err = RefError;

    fn from_str(s: &str) -> Result<Self, RefError> {
        // The digest follows the only '@'; the tag follows the last ':' after the last '/'.
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(digest(d)?)),
            None => (s, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(tag(t)?)),
            _ => (rest, None),
        };
        if name.len() > NAME_MAX {
            return Err(RefError::NameTooLong);
        }
        let (registry, path) = split_registry(name)?;
        for component in path.split('/') {
            path_component(component)?;
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_owned()
        };
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            _ => tag,
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

/// Splits off the registry as Docker does: the first component is a registry host when it has a
/// '.' or a ':' or is `localhost`; otherwise the image is on Docker Hub. Host names are
/// case-insensitive, and saved registry logins are kept in lower case.
fn split_registry(name: &str) -> Result<(String, &str), RefError> {
    let Some((first, rest)) = name.split_once('/') else {
        return Ok((DOCKER_HUB.to_owned(), name));
    };
    if !(first.contains(['.', ':']) || first == "localhost") {
        return Ok((DOCKER_HUB.to_owned(), name));
    }
    let (host, port) = match first.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (first, None),
    };
    let host_ok = !host.is_empty() && host.split('.').all(host_label);
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !host_ok || !port_ok {
        return Err(RefError::Registry(first.to_owned()));
    }
    let registry = first.to_ascii_lowercase();
    Ok((
        if registry == DOCKER_HUB_LEGACY {
            DOCKER_HUB.to_owned()
        } else {
            registry
        },
        rest,
    ))
}

/// `[a-zA-Z0-9]` or `[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`.
fn host_label(l: &str) -> bool {
    !l.is_empty()
        && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn path_component(c: &str) -> Result<(), RefError> {
    if c.is_empty() {
        return Err(RefError::Empty);
    }
    if c.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(RefError::Uppercase(c.to_owned()));
    }
    let bad = || RefError::Repository(c.to_owned());
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let mut i = 0;
    loop {
        // An alphanumeric run.
        let start = i;
        while i < b.len() && alnum(b[i]) {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        if i == b.len() {
            return Ok(());
        }
        // A separator: '.', '_', '__' or one or more '-'.
        match b[i] {
            b'.' => i += 1,
            b'_' => i += if b.get(i + 1) == Some(&b'_') { 2 } else { 1 },
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return Err(bad()),
        }
    }
}

fn tag(t: &str) -> Result<String, RefError> {
    let ok = !t.is_empty()
        && t.len() <= TAG_MAX
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !t.starts_with(['.', '-']);
    if ok {
        Ok(t.to_owned())
    } else {
        Err(RefError::Tag(t.to_owned()))
    }
}

/// `sha256:` and 64 hex digits (or sha384/96, sha512/128), in lower case as registries write them.
fn digest(d: &str) -> Result<String, RefError> {
    let Some((algorithm, hex)) = d.split_once(':') else {
        return Err(RefError::Digest(format!(
            "{d:?} is not a digest (write it as sha256: and 64 hex digits)"
        )));
    };
    let want = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => {
            return Err(RefError::Digest(format!(
                "{algorithm:?} is not a digest algorithm registries use (sha256, sha384 or sha512)"
            )))
        }
    };
    if hex.len() != want
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(RefError::Digest(format!(
            "a {algorithm} digest is {want} lower-case hex digits"
        )));
    }
    Ok(d.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ImageRef, RefError> {
        s.parse()
    }

    #[test]
    fn normalises_as_docker_does() {
        let f64 = "f".repeat(64);
        for (input, registry, repository, tag, digest) in [
            (
                "busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "test.com:tag",
                "docker.io",
                "library/test.com",
                Some("tag"),
                None,
            ),
            (
                "test.com:5000",
                "docker.io",
                "library/test.com",
                Some("5000"),
                None,
            ),
            ("test.com/repo:tag", "test.com", "repo", Some("tag"), None),
            ("test:5000/repo", "test:5000", "repo", Some("latest"), None),
            ("localhost/repo", "localhost", "repo", Some("latest"), None),
            (
                "Registry.Example.COM/a/b",
                "registry.example.com",
                "a/b",
                Some("latest"),
                None,
            ),
            (
                "index.docker.io/nginx:1",
                "docker.io",
                "library/nginx",
                Some("1"),
                None,
            ),
            (
                "docker.io/owner/app",
                "docker.io",
                "owner/app",
                Some("latest"),
                None,
            ),
            (
                "lowercase:Uppercase",
                "docker.io",
                "library/lowercase",
                Some("Uppercase"),
                None,
            ),
            (
                "sub-dom1.foo.com/bar/baz/quux:some-long-tag",
                "sub-dom1.foo.com",
                "bar/baz/quux",
                Some("some-long-tag"),
                None,
            ),
            (
                "b.gcr.io/test.example.com/my-app:test.example.com",
                "b.gcr.io",
                "test.example.com/my-app",
                Some("test.example.com"),
                None,
            ),
            (
                "xn--n3h.com/myimage:xn--n3h.com",
                "xn--n3h.com",
                "myimage",
                Some("xn--n3h.com"),
                None,
            ),
            (
                "foo_bar.com:8080",
                "docker.io",
                "library/foo_bar.com",
                Some("8080"),
                None,
            ),
            (
                "foo/foo_bar.com:8080",
                "docker.io",
                "foo/foo_bar.com",
                Some("8080"),
                None,
            ),
            (
                "a/b__c---d.e_f:_x",
                "docker.io",
                "a/b__c---d.e_f",
                Some("_x"),
                None,
            ),
            (
                "opensuse/leap:15.3",
                "docker.io",
                "opensuse/leap",
                Some("15.3"),
                None,
            ),
        ] {
            let r = parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (
                    r.registry.as_str(),
                    r.repository.as_str(),
                    r.tag.as_deref(),
                    r.digest.as_deref()
                ),
                (registry, repository, tag, digest),
                "{input}"
            );
        }
        let d = format!("sha256:{f64}");
        let r = parse(&format!("test:5000/repo@{d}")).unwrap();
        assert_eq!((r.tag, r.digest.as_deref()), (None, Some(d.as_str())));
        let r = parse(&format!("test:5000/repo:tag@{d}")).unwrap();
        assert_eq!(r.whole(), format!("test:5000/repo:tag@{d}"));
        let d512 = format!("sha512:{}", "0".repeat(128));
        assert!(parse(&format!("x.io/y@{d512}")).is_ok());
    }

    #[test]
    fn refuses_what_docker_refuses() {
        let f64 = "f".repeat(64);
        for (input, want) in [
            (":justtag", RefError::Empty),
            ("x.io//a", RefError::Empty),
            ("a/", RefError::Empty),
            ("Uppercase:tag", RefError::Uppercase("Uppercase".into())),
            (
                "Uppercase/lowercase:tag",
                RefError::Uppercase("Uppercase".into()),
            ),
            (
                "test:5000/Uppercase/lowercase:tag",
                RefError::Uppercase("Uppercase".into()),
            ),
            ("aa/asdf$$^/aa", RefError::Repository("asdf$$^".into())),
            ("a..b", RefError::Repository("a..b".into())),
            ("a___b", RefError::Repository("a___b".into())),
            ("-x", RefError::Repository("-x".into())),
            ("x-", RefError::Repository("x-".into())),
            ("a b", RefError::Repository("a b".into())),
            ("ngi\nnx", RefError::Repository("ngi\nnx".into())),
            (
                "nginx;rm -rf /",
                RefError::Repository("nginx;rm -rf ".into()),
            ),
            ("-bad.io/x", RefError::Registry("-bad.io".into())),
            ("bad_host.io/x", RefError::Registry("bad_host.io".into())),
            ("host.io:/x", RefError::Registry("host.io:".into())),
            ("host.io:80a/x", RefError::Registry("host.io:80a".into())),
            ("nginx:", RefError::Tag(String::new())),
            ("nginx:bad tag", RefError::Tag("bad tag".into())),
            ("nginx:.x", RefError::Tag(".x".into())),
            ("nginx:é", RefError::Tag("é".into())),
        ] {
            assert_eq!(parse(input), Err(want), "{input:?}");
        }
        assert_eq!(
            parse(&format!("nginx:{}", "t".repeat(129))),
            Err(RefError::Tag("t".repeat(129)))
        );
        assert!(parse(&format!("nginx:{}", "t".repeat(128))).is_ok());
        assert_eq!(parse(&"a".repeat(256)), Err(RefError::NameTooLong));
        assert!(parse(&"a".repeat(255)).is_ok());
        for bad in [
            "repo@sha256:ffff".to_owned(),
            format!("repo@md5:{f64}"),
            format!("repo@sha256:{}", "F".repeat(64)),
            format!("repo@{f64}"),
            format!("@sha256:{f64}"),
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse(&format!("repo@md5:{f64}")),
            Err(RefError::Digest(_))
        ));
        assert_eq!(parse(&format!("@sha256:{f64}")), Err(RefError::Empty));
    }
}
