//! Strict input grammars. Everything a person types passes one of these before it is stored.

use crate::{model::Quotas, Error, FieldError, Result};

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
    let domain_ok = labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
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

/// A DNS host name: lower-case LDH labels of 1–63 characters, at least two labels, at most
/// 253 characters. Used for configured names that end up in HAProxy config and links.
pub fn hostname(input: &str) -> Result<String, String> {
    let h = input.trim().trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = h.split('.').collect();
    let ok = h.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
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

/// Checks the three quota fields of a form, reporting every bad one.
pub fn quotas(max_apps: &str, max_memory_mb: &str, max_cpus: &str) -> Result<Quotas> {
    let mut c = Checks::default();
    let q = quotas_into(&mut c, max_apps, max_memory_mb, max_cpus);
    c.finish()?;
    Ok(q.expect("no errors means every field parsed"))
}

/// Like [`quotas`], adding its errors to a larger form's checks.
pub fn quotas_into(
    c: &mut Checks,
    max_apps: &str,
    max_memory_mb: &str,
    max_cpus: &str,
) -> Option<Quotas> {
    let a = c.check("max_apps", whole_number(max_apps, 0, 1000, "apps"));
    let m = c.check(
        "max_memory_mb",
        whole_number(max_memory_mb, 0, 1_048_576, "MiB"),
    );
    let p = c.check("max_cpus", cpus_milli(max_cpus));
    Some(Quotas {
        max_apps: a?,
        max_memory_mb: m?,
        max_cpus_milli: p?,
    })
}

/// Formats thousandths of a CPU for display ("1.5").
pub fn format_cpus(milli: i64) -> String {
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        let s = format!("{}.{:03}", milli / 1000, milli % 1000);
        s.trim_end_matches('0').to_string()
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
        let e = quotas("x", "-1", "999").unwrap_err();
        let fields: Vec<_> = e.fields().iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["max_apps", "max_memory_mb", "max_cpus"]);
        assert_eq!(
            quotas("3", "512", "0.5").unwrap(),
            Quotas {
                max_apps: 3,
                max_memory_mb: 512,
                max_cpus_milli: 500
            }
        );
    }
}
