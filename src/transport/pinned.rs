//! A registry's own self-signed certificate, trusted by the user, accepted as the server's
//! certificate even when it says it is a CA.
//!
//! Docker's guide to a registry with a self-signed certificate makes it with
//! `openssl req -x509`, which marks it `CA:TRUE`, and has clients trust that file. Go's
//! TLS (docker, podman, skopeo, containerd) then accepts it, as a certificate of the
//! trust pool shown by the server itself. webpki refuses any CA certificate in the
//! server's place (`CaUsedAsEndEntity`), so dist did too, with the file given to it.
//!
//! dist now accepts a certificate webpki refused only when it is byte for byte one the user
//! trusts for this registry (`--ca-file`, `ca` in hosts.toml, `certs.d`) or one of the
//! trust store (`SSL_CERT_FILE`, as crane and Go's other clients are told to trust it),
//! valid for the name dist asked for and at this time. rustls still checks that the server holds the
//! certificate's key.

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::CertificateError;

/// Accepts `end_entity` if it is one of `trusted` and valid for `name` at `now`; `None`
/// when it is none of them, so that the original refusal stands.
pub(super) fn verify(
    trusted: &[CertificateDer<'static>],
    end_entity: &CertificateDer<'_>,
    name: &ServerName<'_>,
    now: UnixTime,
) -> Option<Result<(), rustls::Error>> {
    if !trusted.iter().any(|t| t.as_ref() == end_entity.as_ref()) {
        return None;
    }
    Some(valid_for(end_entity, name, now).map_err(rustls::Error::InvalidCertificate))
}

fn valid_for(
    cert: &CertificateDer<'_>,
    name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), CertificateError> {
    let (not_before, not_after) = validity(cert).ok_or(CertificateError::BadEncoding)?;
    // Its dates, for the message, as rustls gives them for other certificates.
    let at = |secs: i64| {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs.max(0).unsigned_abs()))
    };
    let time = now;
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if now < not_before {
        return Err(CertificateError::NotValidYetContext {
            time,
            not_before: at(not_before),
        });
    }
    if now > not_after {
        return Err(CertificateError::ExpiredContext {
            time,
            not_after: at(not_after),
        });
    }
    webpki::EndEntityCert::try_from(cert)
        .map_err(|_| CertificateError::BadEncoding)?
        .verify_is_valid_for_subject_name(name)
        .map_err(|e| match e {
            // The names it has, for the message, as rustls gives them for other certificates.
            webpki::Error::CertNotValidForName(names) => CertificateError::NotValidForNameContext {
                expected: names.expected,
                presented: names.presented,
            },
            _ => CertificateError::NotValidForName,
        })
}

/// `notBefore` and `notAfter` of a DER certificate, in seconds since 1970. webpki reads
/// them only while verifying a chain, which is what refused this certificate.
fn validity(cert: &[u8]) -> Option<(i64, i64)> {
    let [_, validity, _, _] = fields(cert)?;
    let (tag, not_before, rest) = tlv(validity)?;
    let not_before = time(tag, not_before)?;
    let (tag, not_after, _) = tlv(rest)?;
    Some((not_before, time(tag, not_after)?))
}

/// The issuer and the subject of a DER certificate, as the content of each name's DER
/// element: equal for a certificate that is its own issuer. webpki shows neither.
pub(super) fn issuer_and_subject(cert: &[u8]) -> Option<(&[u8], &[u8])> {
    let [issuer, _, subject, _] = fields(cert)?;
    Some((issuer, subject))
}

/// Whether a DER certificate's public key is the one of `spki` (a DER
/// SubjectPublicKeyInfo), compared as each holds it; `None` when the certificate cannot be
/// read so far. For a client certificate webpki does not parse (X.509 v1), whose key
/// rustls cannot check against the private key.
pub(super) fn holds_public_key(cert: &[u8], spki: &[u8]) -> Option<bool> {
    let [_, _, _, held] = fields(cert)?;
    Some(tlv(spki).is_some_and(|(_, key, _)| key == held))
}

/// The content of a DER certificate's issuer, validity, subject and public key info.
fn fields(cert: &[u8]) -> Option<[&[u8]; 4]> {
    const SEQUENCE: u8 = 0x30;
    const EXPLICIT_VERSION: u8 = 0xa0;
    let (SEQUENCE, certificate, _) = tlv(cert)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = tlv(certificate)? else {
        return None;
    };
    let (tag, _, mut rest) = tlv(tbs)?;
    if tag == EXPLICIT_VERSION {
        (_, _, rest) = tlv(rest)?; // the serial number
    }
    (_, _, rest) = tlv(rest)?; // the signature algorithm
    let (SEQUENCE, issuer, rest) = tlv(rest)? else {
        return None;
    };
    let (SEQUENCE, validity, rest) = tlv(rest)? else {
        return None;
    };
    let (SEQUENCE, subject, rest) = tlv(rest)? else {
        return None;
    };
    let (SEQUENCE, spki, _) = tlv(rest)? else {
        return None;
    };
    Some([issuer, validity, subject, spki])
}

/// The first common name (CN) of a name's content (see [`issuer_and_subject`]), when it is
/// text: what people call a CA by, and what `openssl x509 -issuer` shows.
pub(super) fn common_name(name: &[u8]) -> Option<String> {
    const SET: u8 = 0x31;
    const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03]; // 2.5.4.3
    let mut rest = name;
    while !rest.is_empty() {
        let (tag, set, next) = tlv(rest)?;
        rest = next;
        if tag != SET {
            continue;
        }
        let mut attributes = set;
        while !attributes.is_empty() {
            let (_, attribute, next) = tlv(attributes)?;
            attributes = next;
            let (_, oid, value) = tlv(attribute)?;
            if oid != COMMON_NAME {
                continue;
            }
            // UTF8String, PrintableString, TeletexString (in practice Latin-1 or ASCII),
            // IA5String; a BMPString or anything else is not shown.
            let (tag, text, _) = tlv(value)?;
            return matches!(tag, 0x0c | 0x13 | 0x14 | 0x16)
                .then(|| String::from_utf8_lossy(text).into_owned());
        }
    }
    None
}

/// One DER element: its tag, its content and what follows it.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// An X.509 `Time`: UTCTime (`YYMMDDHHMMSSZ`, years 1950-2049) or GeneralizedTime
/// (`YYYYMMDDHHMMSSZ`), in seconds since 1970.
fn time(tag: u8, value: &[u8]) -> Option<i64> {
    const UTC_TIME: u8 = 0x17;
    const GENERALIZED_TIME: u8 = 0x18;
    let s = std::str::from_utf8(value).ok()?;
    let number = |from: usize, to: usize| -> Option<i64> {
        let digits = s.get(from..to)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (year, at) = match tag {
        UTC_TIME => match number(0, 2)? {
            yy @ 50.. => (1900 + yy, 2),
            yy => (2000 + yy, 2),
        },
        GENERALIZED_TIME => (number(0, 4)?, 4),
        _ => return None,
    };
    if s.len() != at + 11 || !s.ends_with('Z') {
        return None;
    }
    let field = |i: usize| number(at + 2 * i, at + 2 * i + 2);
    let (month, day) = (field(0)?, field(1)?);
    let (hour, minute, second) = (field(2)?, field(3)?, field(4)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// A time in seconds since 1970 as `YYYY-MM-DD HH:MM:SS UTC`, for messages about a
/// certificate's dates (rustls shows them as seconds since 1970).
pub(super) fn utc(secs: u64) -> String {
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's `civil_from_days`.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names openssl and rcgen write: issuer and subject told apart, and their CN read.
    #[test]
    fn issuer_and_subject_names() {
        let (ca_key, ca) = {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, "Example Corp");
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "Example Issuing CA 2");
            let cert = params.self_signed(&key).unwrap();
            (key, cert)
        };
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "registry.example");
        let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();

        let (issuer, subject) = issuer_and_subject(leaf.der()).unwrap();
        assert_eq!(common_name(issuer).as_deref(), Some("Example Issuing CA 2"));
        assert_eq!(common_name(subject).as_deref(), Some("registry.example"));
        let (issuer, subject) = issuer_and_subject(ca.der()).unwrap();
        assert_eq!(issuer, subject);
        assert_eq!(issuer_and_subject(&leaf.der()[..40]), None);
        assert_eq!(common_name(&[]), None);
    }

    #[test]
    fn calendar_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_709_251_199), "2024-02-29 23:59:59 UTC");
        assert_eq!(utc(2_524_607_999), "2049-12-31 23:59:59 UTC");
        for days in [0, 11_017, 19_782, 30_000] {
            let (y, m, d) = {
                let text = utc(days as u64 * 86_400);
                let n = |r: std::ops::Range<usize>| text[r].parse::<i64>().unwrap();
                (n(0..4), n(5..7), n(8..10))
            };
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn both_time_forms() {
        assert_eq!(time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(time(0x18, b"20500101000000Z"), Some(2_524_608_000));
        assert_eq!(time(0x17, b"700101000000"), None, "no Z");
        assert_eq!(time(0x17, b"701301000000Z"), None, "month 13");
        assert_eq!(time(0x17, b"70+101000000Z"), None, "not digits");
        assert_eq!(time(0x04, b"700101000000Z"), None, "not a time");
    }

    /// A self-signed CA certificate for `127.0.0.1` and `localhost`, valid from `from` to
    /// `to` (years).
    fn self_signed_ca(from: i32, to: i32) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.not_before = rcgen::date_time_ymd(from, 1, 1);
        params.not_after = rcgen::date_time_ymd(to, 1, 1);
        params.self_signed(&key).unwrap().der().clone()
    }

    fn at_year(year: i64) -> UnixTime {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            days_from_civil(year, 6, 1) as u64 * 86_400,
        ))
    }

    #[test]
    fn reads_the_validity_of_a_real_certificate() {
        let cert = self_signed_ca(2001, 2060);
        assert_eq!(
            validity(&cert),
            Some((
                days_from_civil(2001, 1, 1) * 86_400,
                days_from_civil(2060, 1, 1) * 86_400
            ))
        );
        assert_eq!(validity(&cert[..40]), None, "cut short");
    }

    #[test]
    fn only_a_trusted_certificate_for_its_name_and_time_passes() {
        let cert = self_signed_ca(2001, 2060);
        let other = self_signed_ca(2001, 2060);
        let localhost = ServerName::try_from("localhost").unwrap();
        let ip = ServerName::try_from("127.0.0.1").unwrap();
        let elsewhere = ServerName::try_from("registry.example").unwrap();
        let trusted = [cert.clone()];
        assert!(verify(&trusted, &cert, &localhost, at_year(2030)).is_some_and(|r| r.is_ok()));
        assert!(verify(&trusted, &cert, &ip, at_year(2030)).is_some_and(|r| r.is_ok()));
        assert!(verify(&trusted, &other, &localhost, at_year(2030)).is_none());
        let new_year = |year| {
            UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                days_from_civil(year, 1, 1) as u64 * 86_400,
            ))
        };
        let refused = |name, year| match verify(&trusted, &cert, name, at_year(year)) {
            Some(Err(rustls::Error::InvalidCertificate(why))) => why,
            other => panic!("{other:?}"),
        };
        assert!(
            matches!(
                refused(&elsewhere, 2030),
                CertificateError::NotValidForNameContext { presented, .. }
                    if presented == ["DnsName(\"localhost\")", "IpAddress(127.0.0.1)"]
            ),
            "{:?}",
            refused(&elsewhere, 2030)
        );
        assert_eq!(
            refused(&localhost, 2070),
            CertificateError::ExpiredContext {
                time: at_year(2070),
                not_after: new_year(2060),
            }
        );
        assert_eq!(
            refused(&localhost, 1999),
            CertificateError::NotValidYetContext {
                time: at_year(1999),
                not_before: new_year(2001),
            }
        );
    }
}
