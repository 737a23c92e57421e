//! Strict input grammars. Everything a person types passes one of these before it is stored.

use crate::{model::Quotas, Error, FieldError, Result};

pub use crate::image_ref::ImageRef;
pub use pier_types::format_cpus;

pub const PASSWORD_MIN_CHARS: usize = 12;
pub const PASSWORD_MAX_CHARS: usize = 1024;
const EMAIL_MAX: usize = 254;

/// Collects field errors so a form can show all of them at once.
#[derive(Default)]
pub struct Checks(Vec<FieldError>);

impl Checks {
    pub fn check<T>(&mut self, field: &str, r: Result<T, String>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(message) => {
                self.0.push(FieldError {
                    field: field.to_owned(),
                    message,
                });
                None
            }
        }
    }

    pub fn finish(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(self.0))
        }
    }
}

/// Normalises (trim, lower-case) and checks an email address.
pub fn email(input: &str) -> Result<String, String> {
    let e = input.trim().to_ascii_lowercase();
    if e.is_empty() {
        return Err("Enter an email address.".into());
    }
    if e.len() > EMAIL_MAX {
        return Err(format!(
            "An email address has at most {EMAIL_MAX} characters."
        ));
    }
    let bad = || Err("Enter a valid email address, like name@example.com.".into());
    let Some((local, domain)) = e.split_once('@') else {
        return bad();
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2 && domain.len() <= 253 && labels.iter().all(|l| ldh_label(l));
    if local_ok && domain_ok {
        Ok(e)
    } else {
        bad()
    }
}

pub fn password(input: &str) -> Result<(), String> {
    let n = input.chars().count();
    if n < PASSWORD_MIN_CHARS {
        Err(format!(
            "Use at least {PASSWORD_MIN_CHARS} characters (this one has {n})."
        ))
    } else if n > PASSWORD_MAX_CHARS {
        Err(format!("Use at most {PASSWORD_MAX_CHARS} characters."))
    } else if input.contains('\0') {
        Err("A password cannot contain a NUL character.".into())
    } else {
        Ok(())
    }
}

/// One DNS label: letters, digits and hyphens, 1–63 characters, no hyphen at either end.
fn ldh_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && !l.starts_with('-')
        && !l.ends_with('-')
        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// A DNS host name: lower-case LDH labels of 1–63 characters, at least two labels, at most
/// 253 characters. Used for configured names that end up in HAProxy config and links.
pub fn hostname(input: &str) -> Result<String, String> {
    let h = input.trim().trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = h.split('.').collect();
    let ok = h.len() <= 253 && labels.len() >= 2 && labels.iter().all(|l| ldh_label(l));
    if ok {
        Ok(h)
    } else {
        Err(format!(
            "{input:?} is not a valid host name, like pier.example.com."
        ))
    }
}

fn whole_number(input: &str, min: i64, max: i64, what: &str) -> Result<i64, String> {
    let n: i64 = input
        .trim()
        .parse()
        .map_err(|_| format!("Enter a whole number of {what}."))?;
    in_range(n, min, max, what)
}

fn in_range(n: i64, min: i64, max: i64, what: &str) -> Result<i64, String> {
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(format!("Enter between {min} and {max} {what}."))
    }
}

/// Parses CPUs written as a decimal ("1.5") into thousandths.
pub fn cpus_milli(input: &str) -> Result<i64, String> {
    let s = input.trim();
    let msg = || "Enter a number of CPUs between 0 and 256, like 0.5 or 2.".to_string();
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
        || frac.len() > 3
        || whole.len() > 3
    {
        return Err(msg());
    }
    let w: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| msg())?
    };
    let f: i64 = format!("{frac:0<3}").parse().map_err(|_| msg())?;
    let milli = w * 1000 + f;
    if milli > 256_000 {
        return Err(msg());
    }
    Ok(milli)
}

/// Checks the quota fields of a form, reporting every bad one. An empty storage or backup field
/// means its value in `defaults` (the current value, or the operator's default for a new user).
pub fn quotas(
    max_apps: &str,
    max_memory_mb: &str,
    max_cpus: &str,
    max_storage_mb: &str,
    max_backup_mb: &str,
    defaults: Quotas,
) -> Result<Quotas> {
    let mut c = Checks::default();
    let q = quotas_into(
        &mut c,
        max_apps,
        max_memory_mb,
        max_cpus,
        max_storage_mb,
        max_backup_mb,
        defaults,
    );
    c.finish()?;
    Ok(q.expect("no errors means every field parsed"))
}

/// Like [`quotas`], adding its errors to a larger form's checks.
pub fn quotas_into(
    c: &mut Checks,
    max_apps: &str,
    max_memory_mb: &str,
    max_cpus: &str,
    max_storage_mb: &str,
    max_backup_mb: &str,
    defaults: Quotas,
) -> Option<Quotas> {
    let a = c.check("max_apps", whole_number(max_apps, 0, 1000, "apps"));
    let m = c.check(
        "max_memory_mb",
        whole_number(max_memory_mb, 0, 1_048_576, "MiB"),
    );
    let p = c.check("max_cpus", cpus_milli(max_cpus));
    let mut mib = |field: &'static str, text: &str, default: i64| {
        if text.trim().is_empty() {
            Some(default)
        } else {
            c.check(field, whole_number(text, 0, 16 * 1_048_576, "MiB"))
        }
    };
    let st = mib("max_storage_mb", max_storage_mb, defaults.max_storage_mb);
    let bk = mib("max_backup_mb", max_backup_mb, defaults.max_backup_mb);
    Some(Quotas {
        max_apps: a?,
        max_memory_mb: m?,
        max_cpus_milli: p?,
        max_storage_mb: st?,
        max_backup_mb: bk?,
    })
}

// ----- domains ----------------------------------------------------------------------------

/// A domain a tenant registers: IDNA-normalised to lower-case ASCII (`Bücher.example` →
/// `xn--bcher-kva.example`), LDH labels of 1–63 characters, at most 253 in all, at least one
/// label under a public suffix (no bare `co.uk`), and a leading `*.` only when wildcards are
/// allowed. What passes is safe to write into HAProxy maps and configuration.
pub fn domain(input: &str, allow_wildcard: bool) -> Result<String, String> {
    let raw = input.trim().trim_end_matches('.');
    let bad = || format!("{input:?} is not a domain name like app.example.com.");
    if raw.is_empty() || raw.len() > 253 * 4 {
        return Err(bad());
    }
    let (wild, rest) = match raw.strip_prefix("*.") {
        Some(r) => (true, r),
        None => (false, raw),
    };
    if wild && !allow_wildcard {
        return Err("Wildcard domains are not allowed on this Pier.".into());
    }
    // Only letters, digits, hyphens, dots (and non-ASCII letters for IDNA) go in.
    if rest
        .chars()
        .any(|c| c.is_ascii() && !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        || rest.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(bad());
    }
    let ascii = idna::domain_to_ascii_strict(rest).map_err(|_| bad())?;
    let labels: Vec<&str> = ascii.split('.').collect();
    let ldh = ascii.len() <= 253
        && labels
            .iter()
            .all(|l| ldh_label(l) && !l.bytes().any(|b| b.is_ascii_uppercase()));
    if !ldh {
        return Err(bad());
    }
    match psl::domain_str(&ascii) {
        Some(_) => {}
        None => {
            return Err(format!(
                "{ascii} is a top-level name or public suffix (like com or co.uk): register a name under it."
            ))
        }
    }
    Ok(if wild { format!("*.{ascii}") } else { ascii })
}

// ----- apps -------------------------------------------------------------------------------

/// Limits on what one app's environment may hold.
pub const MAX_ENV_VARS: usize = 200;
pub const MAX_ENV_NAME: usize = 255;
pub const MAX_ENV_VALUE: usize = 32 * 1024;
pub const MAX_ENV_TOTAL: usize = 256 * 1024;
/// The smallest memory limit an app may have; less and most runtimes cannot start.
pub const MIN_APP_MEMORY_MB: i64 = 16;
/// The smallest CPU share an app may have (0.05 CPU).
pub const MIN_APP_CPUS_MILLI: i64 = 50;

/// An app name: a DNS label (it becomes part of host names and container names).
/// A DNS label made from an e-mail's local part (before `@` and any `+tag`): lower case,
/// letters and digits, other runs turned into one hyphen (so never `--`, which separates app and
/// handle in platform host names), at most 22 characters. Empty when nothing usable is left.
pub fn handle_from_email(email: &str) -> String {
    let local = email.split('@').next().unwrap_or("");
    let local = local.split('+').next().unwrap_or("");
    let mut out = String::new();
    for c in local.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 22 {
            break;
        }
    }
    out.trim_matches('-').to_owned()
}

/// Whether `h` may be a handle (the tenant part of platform host names): a DNS label of
/// lower-case letters, digits and single hyphens, not starting or ending with one. Never `--`,
/// which separates app and handle in platform host names.
pub fn handle(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 63
        && !h.starts_with('-')
        && !h.ends_with('-')
        && !h.contains("--")
        && h.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// An app name also never contains `--`: platform host names are `<app>--<handle>.<base>`, and
/// only a `--` that neither part can contain makes them unambiguous (apps named before this rule
/// keep their names; see `domains::platform_names`).
pub fn app_name(input: &str) -> Result<String, String> {
    let n = input.trim();
    if n.contains("--") {
        return Err(
            "An app name cannot contain two hyphens in a row (--): Pier uses them in its host names."
                .into(),
        );
    }
    label40(n).map(|_| n.to_owned())
}

/// 1–40 lower-case letters, digits and hyphens, not starting or ending with a hyphen.
fn label40(n: &str) -> Result<String, String> {
    let ok = !n.is_empty()
        && n.len() <= 40
        && !n.starts_with('-')
        && !n.ends_with('-')
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(n.to_owned())
    } else {
        Err("Use 1–40 lower-case letters, digits and hyphens, not starting or ending with a hyphen, like my-app.".into())
    }
}

/// A volume's name: like an app name (it names the volume among the tenant's), though it may
/// contain `--` (it is never part of a host name).
pub fn volume_name(input: &str) -> Result<String, String> {
    label40(input.trim()).map_err(|_| {
        "Name the volume with 1–40 lower-case letters, digits and hyphens, like db-data.".into()
    })
}

/// The most volumes one app may mount.
pub const MAX_VOLUMES_PER_APP: usize = 8;
/// The smallest and largest volume, in MiB.
pub const MIN_VOLUME_MB: i64 = 16;
pub const MAX_VOLUME_MB: i64 = 1_048_576;

/// Where a volume is mounted in the container: an absolute, normalised path of safe characters,
/// not `/` and not under the kernel's file systems.
pub fn mount_path(input: &str) -> Result<String, String> {
    let p = input.trim();
    if !p.starts_with('/') {
        return Err(format!(
            "{p:?} is not an absolute path: write it from the root, like /var/lib/postgresql/data."
        ));
    }
    if p == "/" {
        return Err("A volume cannot replace the whole file system (/): name a directory.".into());
    }
    if p.len() > 200
        || !p
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-@+".contains(c))
    {
        return Err(
            "Use at most 200 letters, digits and . _ - @ + in a mount path, with / between directories."
                .into(),
        );
    }
    let parts: Vec<&str> = p[1..].split('/').collect();
    if parts
        .iter()
        .any(|s| s.is_empty() || *s == "." || *s == "..")
    {
        return Err(format!(
            "{p:?} is not a normalised path: no empty parts, no . or .., no trailing /."
        ));
    }
    if matches!(parts[0], "proc" | "sys" | "dev") {
        return Err(format!(
            "{p:?} is under /{}, which belongs to the kernel: mount volumes elsewhere.",
            parts[0]
        ));
    }
    Ok(p.to_owned())
}

/// A volume's size in MiB.
pub fn volume_size_mb(input: &str) -> Result<i64, String> {
    whole_number(input, MIN_VOLUME_MB, MAX_VOLUME_MB, "MiB")
}

/// A volume's size in MiB, given as a number.
pub fn volume_size(n: i64) -> Result<i64, String> {
    in_range(n, MIN_VOLUME_MB, MAX_VOLUME_MB, "MiB")
}

/// An image reference, checked against the Docker/OCI distribution grammar and normalised
/// (`nginx` → `docker.io/library/nginx:latest`); see [`crate::image_ref`].
pub fn image(input: &str) -> Result<ImageRef, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("Enter an image reference, like ghcr.io/owner/app:1.2 or nginx:1.27.".into());
    }
    if s.len() > 512 || s.contains("://") {
        return Err(format!(
            "{s:?} is not an image reference. Write it as registry/repository:tag, without https://."
        ));
    }
    s.parse()
        .map_err(|e| format!("{s:?} is not a valid image reference: {e}."))
}

/// A registry host as written in image references: `host[:port]`.
pub fn registry_host(input: &str) -> Result<String, String> {
    let s = input.trim().trim_end_matches('/').to_ascii_lowercase();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(&s)
        .to_owned();
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s.as_str(), None),
    };
    let host_ok = !host.is_empty() && host.len() <= 253 && host.split('.').all(ldh_label);
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
    if host_ok && port_ok {
        Ok(s)
    } else {
        Err(format!(
            "{input:?} is not a registry host. Write it as it appears in image references, like ghcr.io or registry.example.com:5000."
        ))
    }
}

/// Refuses a registry that lives in the host's own network. Docker pulls from the host, so an
/// image naming `127.0.0.1:PORT`, `localhost` or a private address would let anyone who can
/// create an app probe and fetch from services that only this machine (or its LAN) can reach.
/// Operators who run such a registry list it in `PIER_ALLOWED_REGISTRIES` instead. A public
/// name that *resolves* to a private address is not caught here (that is the egress filter's job).
pub fn public_registry(registry: &str) -> std::result::Result<(), String> {
    let host = registry_host_only(registry).trim_end_matches('.');
    let refuse = || {
        Err(format!(
            "{registry} is an address on this machine or its private network; this Pier does not pull images from there."
        ))
    };
    if host == "localhost" || host.ends_with(".localhost") {
        return refuse();
    }
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return if internal_ip(ip) { refuse() } else { Ok(()) };
    }
    // No top-level domain is numeric: `127.1`, `2130706433` or `0x7f.1` are addresses in
    // disguise that some resolvers accept, so they are refused rather than interpreted.
    let last = host.rsplit('.').next().unwrap_or_default();
    if last.is_empty()
        || last.bytes().all(|b| b.is_ascii_digit())
        || (last.starts_with("0x") && last[2..].bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return refuse();
    }
    Ok(())
}

/// The host of `host[:port]` or `[v6][:port]`, brackets removed.
fn registry_host_only(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default();
    }
    match registry.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => registry,
    }
}

/// Loopback, link-local, private (RFC 1918, fc00::/7), shared (100.64/10), unspecified,
/// "this network" (0/8), broadcast and multicast addresses.
fn internal_ip(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return internal_ip(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

/// A container port, as typed.
pub fn port(input: &str) -> Result<u16, String> {
    input
        .trim()
        .parse::<i64>()
        .map_err(|_| PORT_RANGE.to_string())
        .and_then(port_number)
}

const PORT_RANGE: &str = "Enter the port your app listens on inside the container, 1–65535.";

/// A container port, given as a number.
pub fn port_number(n: i64) -> Result<u16, String> {
    match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(PORT_RANGE.into()),
    }
}

/// An app's memory limit in MiB, as typed.
pub fn memory_mb(input: &str) -> Result<i64, String> {
    whole_number(input, MIN_APP_MEMORY_MB, MAX_APP_MEMORY_MB, "MiB")
}

/// An app's memory limit in MiB, given as a number.
pub fn app_memory(n: i64) -> Result<i64, String> {
    in_range(n, MIN_APP_MEMORY_MB, MAX_APP_MEMORY_MB, "MiB")
}

const MAX_APP_MEMORY_MB: i64 = 1_048_576;

/// The most copies of one app that run side by side.
pub const MAX_REPLICAS: i64 = 20;

/// How many copies of an app run side by side.
pub fn replicas(n: i64) -> Result<i64, String> {
    if (1..=MAX_REPLICAS).contains(&n) {
        Ok(n)
    } else {
        Err(format!("Run between 1 and {MAX_REPLICAS} replicas."))
    }
}

/// An app's CPU limit (decimal CPUs, as typed) in thousandths.
pub fn app_cpus_milli(input: &str) -> Result<i64, String> {
    app_cpus(cpus_milli(input)?)
}

/// An app's CPU limit in thousandths, given as a number.
pub fn app_cpus(milli: i64) -> Result<i64, String> {
    if !(0..=256_000).contains(&milli) {
        Err("Enter a number of CPUs between 0 and 256, like 0.5 or 2.".into())
    } else if milli < MIN_APP_CPUS_MILLI {
        Err("Give the app at least 0.05 CPU.".into())
    } else {
        Ok(milli)
    }
}

/// An optional health-check path: empty for none, else an absolute URL path of safe characters.
pub fn health_path(input: &str) -> Result<Option<String>, String> {
    let p = input.trim();
    if p.is_empty() {
        return Ok(None);
    }
    let ok = p.starts_with('/')
        && p.len() <= 200
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:@?".contains(c));
    if ok {
        Ok(Some(p.to_owned()))
    } else {
        Err("Enter a path starting with /, like /healthz, or leave it empty.".into())
    }
}

/// An environment variable name.
pub fn env_name(input: &str) -> Result<String, String> {
    let n = input.trim();
    let mut chars = n.chars();
    let ok = n.len() <= MAX_ENV_NAME
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(n.to_owned())
    } else if n.is_empty() {
        Err("Every variable needs a name.".into())
    } else {
        Err(format!(
            "{n:?} is not a variable name: use letters, digits and _, not starting with a digit."
        ))
    }
}

/// An environment variable value.
pub fn env_value(name: &str, value: &str) -> Result<(), String> {
    if value.contains('\0') {
        Err(format!("The value of {name} contains a NUL character."))
    } else if value.len() > MAX_ENV_VALUE {
        Err(format!(
            "The value of {name} is longer than {} KiB.",
            MAX_ENV_VALUE / 1024
        ))
    } else {
        Ok(())
    }
}

/// One line of a pasted `.env` file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DotenvError {
    pub line: usize,
    pub message: String,
}

/// Reads a `.env` file: `NAME=value` lines, optional `export `, `#` comments and blank lines,
/// values unquoted (trailing ` # comment` dropped), in 'single quotes' (literal) or "double
/// quotes" (with \n, \t, \", \\ escapes; may span lines).
pub fn parse_dotenv(text: &str) -> Result<Vec<(String, String)>, DotenvError> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let lineno = i + 1;
        let raw = lines[i].trim();
        i += 1;
        if raw.is_empty() || raw.starts_with('#') {
            continue;
        }
        let line = raw.strip_prefix("export ").unwrap_or(raw).trim_start();
        let err = |m: String| DotenvError {
            line: lineno,
            message: m,
        };
        let (name, rest) = line
            .split_once('=')
            .ok_or_else(|| err("expected NAME=value".into()))?;
        let name = env_name(name.trim_end()).map_err(err)?;
        let rest = rest.trim_start();
        let value = if let Some(body) = rest.strip_prefix('\'') {
            let end = body
                .find('\'')
                .ok_or_else(|| err("the single quote is never closed".into()))?;
            after_quote(&body[end + 1..]).map_err(err)?;
            body[..end].to_owned()
        } else if let Some(body) = rest.strip_prefix('"') {
            // Double-quoted values may continue over the following lines.
            let mut buf = body.to_owned();
            loop {
                if let Some((v, tail)) = unescape_until_quote(&buf) {
                    after_quote(&tail).map_err(err)?;
                    break v;
                }
                if i >= lines.len() {
                    return Err(err("the double quote is never closed".into()));
                }
                buf.push('\n');
                buf.push_str(lines[i]);
                i += 1;
            }
        } else {
            match rest.find(" #") {
                Some(pos) => rest[..pos].trim_end().to_owned(),
                None => rest.trim_end().to_owned(),
            }
        };
        env_value(&name, &value).map_err(err)?;
        out.push((name, value));
    }
    Ok(out)
}

/// The text up to the first unescaped `"`, with `\n \t \r \" \\` resolved (any other
/// backslash stays as written), and what follows the quote; None when there is no closing quote.
fn unescape_until_quote(s: &str) -> Option<(String, String)> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some((out, chars.collect())),
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('"') => out.push('"'),
                Some('\\') => out.push('\\'),
                Some(o) => {
                    out.push('\\');
                    out.push(o);
                }
                None => out.push('\\'),
            },
            o => out.push(o),
        }
    }
    None
}

/// After a closing quote only blanks and a `# comment` may follow.
fn after_quote(tail: &str) -> Result<(), String> {
    let t = tail.trim_start();
    if t.is_empty() || t.starts_with('#') {
        Ok(())
    } else {
        Err(format!("unexpected text after the closing quote: {t:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(email("  Ada@Example.COM ").unwrap(), "ada@example.com");
        // Surrounding white space (a pasted newline) is trimmed, never kept.
        assert_eq!(email("ada@example.com\n").unwrap(), "ada@example.com");
        assert!(email("a.b+tag@mail.example.org").is_ok());
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a..b@example.com",
            "ada@-x.com",
            "ada@exa mple.com",
            "ada@exa\nmple.com",
            "ada\n@example.com",
            "a@b@example.com",
        ] {
            assert!(email(bad).is_err(), "{bad:?} accepted");
        }
        assert!(email(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(email(&format!("a@{}.com", "b".repeat(300))).is_err());
    }

    #[test]
    fn hostnames() {
        assert_eq!(hostname("Pier.Example.com.").unwrap(), "pier.example.com");
        for bad in [
            "",
            "localhost",
            "a..b",
            "-a.b",
            "a b.c",
            "a.b\nc",
            "a.b#c",
            "%[x].b",
            &"a".repeat(64),
        ] {
            assert!(hostname(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn passwords() {
        assert!(password("elevenchars").is_err());
        assert!(password("twelve chars").is_ok());
        assert!(password(&"x".repeat(1025)).is_err());
        assert!(password("twelve chars\0").is_err());
        // Counted in characters, not bytes.
        assert!(password("ééééééééééé").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(cpus_milli("1.5"), Ok(1500));
        assert_eq!(cpus_milli("2"), Ok(2000));
        assert_eq!(cpus_milli(".25"), Ok(250));
        assert_eq!(cpus_milli("0.125"), Ok(125));
        for bad in ["", ".", "-1", "1.2345", "abc", "257", "1e3", "1,5"] {
            assert!(cpus_milli(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(format_cpus(1500), "1.5");
        assert_eq!(format_cpus(2000), "2");
        assert_eq!(format_cpus(125), "0.125");
    }

    #[test]
    fn quotas_report_every_bad_field() {
        let d = Quotas::default();
        let e = quotas("x", "-1", "999", "lots", "1e9", d).unwrap_err();
        let fields: Vec<_> = e.fields().iter().map(|f| f.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "max_apps",
                "max_memory_mb",
                "max_cpus",
                "max_storage_mb",
                "max_backup_mb"
            ]
        );
        assert_eq!(
            quotas("3", "512", "0.5", "2048", "100", d).unwrap(),
            Quotas {
                max_apps: 3,
                max_memory_mb: 512,
                max_cpus_milli: 500,
                max_storage_mb: 2048,
                max_backup_mb: 100,
            }
        );
        // Empty storage and backup fields keep what they were.
        let d = Quotas {
            max_storage_mb: 777,
            max_backup_mb: 888,
            ..d
        };
        let q = quotas("3", "512", "0.5", " ", "", d).unwrap();
        assert_eq!((q.max_storage_mb, q.max_backup_mb), (777, 888));
    }

    #[test]
    fn handles_from_emails() {
        assert_eq!(
            handle_from_email("Alice.Smith+pier@example.com"),
            "alice-smith"
        );
        assert_eq!(handle_from_email("__bob__@x.io"), "bob");
        assert_eq!(handle_from_email("élodie@x.fr"), "lodie");
        assert_eq!(handle_from_email("+++@x"), "");
        let long = handle_from_email("abcdefghijklmnopqrstuvwxyz0123@x.io");
        assert_eq!(long, "abcdefghijklmnopqrstuv");
        assert!(ldh_label(&format!("{}-{long}", "a".repeat(40))));
    }

    #[test]
    fn mount_paths() {
        assert_eq!(
            mount_path(" /var/lib/postgresql/data ").unwrap(),
            "/var/lib/postgresql/data"
        );
        assert!(mount_path("/data").is_ok());
        for bad in [
            "",
            "/",
            "data",
            "/data/",
            "//data",
            "/a/../b",
            "/a/./b",
            "/proc",
            "/proc/x",
            "/sys/fs",
            "/dev/shm",
            "/a b",
            "/a\nb",
            "/a:b",
            &format!("/{}", "a".repeat(200)),
        ] {
            assert!(mount_path(bad).is_err(), "{bad:?}");
        }
        // Only whole names count: /processes is not /proc.
        assert!(mount_path("/processes").is_ok());
        assert!(volume_size_mb("1024").is_ok());
        assert!(volume_size_mb("8").is_err());
        assert!(volume_size_mb("x").is_err());
    }

    #[test]
    fn app_names_and_handles_never_hold_a_double_hyphen() {
        for bad in ["a--b", "blog--x", "a---b"] {
            assert!(app_name(bad).is_err(), "{bad:?}");
        }
        // Volumes are not part of host names: they still may.
        assert!(volume_name("db--data").is_ok());
        for email in [
            "ann--lee@x.io",
            "ann.-lee@x.io",
            "a-.-b@x.io",
            "-ann-@x.io",
            "__x__@x.io",
        ] {
            let h = handle_from_email(email);
            assert!(handle(&h), "{email} → {h:?}");
        }
        assert!(!handle("a--b") && !handle("-a") && !handle("a-") && !handle(""));
        assert!(handle("ann-lee-12"));
    }

    #[test]
    fn app_names() {
        assert_eq!(app_name(" blog ").unwrap(), "blog");
        assert!(app_name("my-app-2").is_ok());
        for bad in [
            "",
            "-a",
            "a-",
            "My",
            "a_b",
            "a.b",
            "a b",
            &"a".repeat(41),
            "é",
        ] {
            assert!(app_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn image_references() {
        let r = image("nginx").unwrap();
        assert_eq!(r.whole(), "docker.io/library/nginx:latest");
        let r = image("127.0.0.1:5123/pier-test/hello:1").unwrap();
        assert_eq!(r.registry, "127.0.0.1:5123");
        assert_eq!(r.repository, "pier-test/hello");
        assert_eq!(r.tag.as_deref(), Some("1"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = image(&format!("ghcr.io/o/app@{d}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert_eq!(r.pinned(&d).whole(), format!("ghcr.io/o/app@{d}"));
        for bad in [
            "",
            "Nginx",
            "https://ghcr.io/o/app",
            "nginx:",
            "nginx:bad tag",
            "a b",
            "nginx;rm -rf /",
            "ngi\nnx",
            "ghcr.io/o/app@sha256:abc",
            "-x",
        ] {
            assert!(image(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn registries_in_the_host_network_are_refused() {
        for bad in [
            "127.0.0.1:5123",
            "127.0.0.1",
            "127.1:5000",
            "2130706433",
            "0x7f.1",
            "localhost",
            "localhost:5000",
            "LOCALHOST.",
            "registry.localhost:443",
            "10.1.2.3",
            "172.16.0.1:5000",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254:80",
            "169.254.169.254",
            "0.0.0.0:5000",
            "0.1.2.3",
            "255.255.255.255",
            "[::1]:5000",
            "[::]",
            "[fd00::1]:5000",
            "[fe80::1]",
            "[::ffff:127.0.0.1]:5000",
            "[::ffff:10.0.0.1]",
        ] {
            let host = bad.to_ascii_lowercase();
            assert!(public_registry(&host).is_err(), "{bad:?}");
        }
        for good in [
            "docker.io",
            "ghcr.io",
            "registry.example.com:5000",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "[2001:4860::1]:443",
            "localhost.example.com",
            "example.localhostx",
        ] {
            assert_eq!(public_registry(good), Ok(()), "{good:?}");
        }
        // As parsed from whole references.
        assert!(public_registry(&image("127.0.0.1:9/x:1").unwrap().registry).is_err());
        assert!(public_registry(&image("localhost:5000/x").unwrap().registry).is_err());
        assert!(public_registry(&image("nginx").unwrap().registry).is_ok());
    }

    #[test]
    fn registry_hosts() {
        assert_eq!(registry_host("GHCR.io").unwrap(), "ghcr.io");
        assert_eq!(
            registry_host("https://127.0.0.1:5123/").unwrap(),
            "127.0.0.1:5123"
        );
        for bad in ["", "a b", "host:0", "host:99999", "h/x", "-a.com"] {
            assert!(registry_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn env_names_values_and_limits() {
        assert!(env_name("DATABASE_URL").is_ok());
        assert!(env_name("_x1").is_ok());
        for bad in ["", "1A", "A-B", "A B", "A=B", "Ä"] {
            assert!(env_name(bad).is_err(), "{bad:?}");
        }
        assert!(env_value("A", "ünïcode = fine").is_ok());
        assert!(env_value("A", "nul\0").is_err());
        assert!(env_value("A", &"x".repeat(MAX_ENV_VALUE + 1)).is_err());
        assert_eq!(port("8080").unwrap(), 8080);
        for bad in ["0", "65536", "x", ""] {
            assert!(port(bad).is_err());
        }
        assert_eq!(health_path("").unwrap(), None);
        assert_eq!(
            health_path("/healthz").unwrap().as_deref(),
            Some("/healthz")
        );
        for bad in ["healthz", "/a b", "/a\r\nHost: x", "/\"x"] {
            assert!(health_path(bad).is_err(), "{bad:?}");
        }
        assert!(memory_mb("8").is_err());
        assert_eq!(app_cpus_milli("0.25").unwrap(), 250);
        assert!(app_cpus_milli("0.01").is_err());
    }

    #[test]
    fn dotenv_files() {
        let text = "# comment\n\nexport A=1\nB = two words # note\nC='lit $x \\n'\nD=\"a\\nb \\\"q\\\"\"\nE=\"multi\nline\"\nF=\n";
        let vars = parse_dotenv(text).unwrap();
        let get = |n: &str| vars.iter().find(|(k, _)| k == n).unwrap().1.clone();
        assert_eq!(get("A"), "1");
        assert_eq!(get("B"), "two words");
        assert_eq!(get("C"), "lit $x \\n");
        assert_eq!(get("D"), "a\nb \"q\"");
        assert_eq!(get("E"), "multi\nline");
        assert_eq!(get("F"), "");
        let e = parse_dotenv("A=1\nnot a line\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(parse_dotenv("1X=2").unwrap_err().line, 1);
        assert!(parse_dotenv("A=\"open").is_err());
        // Unknown escapes stay as written (regexes, Windows paths).
        let v = parse_dotenv("R=\"^\\d+$\"\nP=\"C:\\new\\x\"").unwrap();
        assert_eq!(v[0].1, "^\\d+$");
        assert_eq!(v[1].1, "C:\\new\\x".replace("\\n", "\n"));
        // Nothing but a comment may follow a closing quote.
        assert!(parse_dotenv("A=\"x\" # fine").is_ok());
        assert!(parse_dotenv("A='x' tail").is_err());
        assert!(parse_dotenv("A=\"x\"tail").is_err());
    }

    #[test]
    fn domains() {
        assert_eq!(
            domain(" App.Example.COM. ", false).unwrap(),
            "app.example.com"
        );
        assert_eq!(
            domain("bücher.example", false).unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(domain("example.co.uk", false).unwrap(), "example.co.uk");
        assert_eq!(domain("*.example.com", true).unwrap(), "*.example.com");
        assert!(domain("*.example.com", false)
            .unwrap_err()
            .contains("Wildcard"));
        for suffix in ["com", "co.uk", "github.io"] {
            assert!(
                domain(suffix, false).unwrap_err().contains("public suffix"),
                "{suffix}"
            );
        }
        // Nothing that could break out of a HAProxy map line or config statement.
        for bad in [
            "",
            "a b.com",
            "a\nb.com",
            "evil.com\nhttp-request deny",
            "evil.com#x",
            "%[req.hdr(host)].com",
            "a\\b.com",
            "a/b.com",
            "a:80.com",
            "-a.com",
            "a-.com",
            "a..com",
            "*.*.example.com",
            "ex*ample.com",
            &format!("{}.com", "a".repeat(64)),
            &format!("{}com", "a.".repeat(130)),
        ] {
            assert!(domain(bad, true).is_err(), "{bad:?}");
        }
    }
}
