//! The static keys of an AWS profile (`AWS_PROFILE`, else `default`) from the shared
//! credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`), as the AWS
//! SDKs read them when no key is in the environment. Profiles that name a
//! `credential_process`, SSO or a role to assume are not read here: the environment, web
//! identity and the instance's role cover those deployments.

use std::path::PathBuf;

/// `(access key id, secret access key, session token)` of the profile in use, if it has them.
pub fn static_keys() -> Option<(String, String, Option<String>)> {
    let file = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".aws/credentials")))?;
    let text = std::fs::read_to_string(file).ok()?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    keys_in(&text, &profile)
}

/// The keys of `profile` in an INI credentials file.
fn keys_in(text: &str, profile: &str) -> Option<(String, String, Option<String>)> {
    let (mut id, mut secret, mut token) = (None, None, None);
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == profile;
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        if !inside {
            continue;
        }
        let v = v.trim().to_string();
        match k.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => id = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            "aws_session_token" => token = Some(v),
            _ => {}
        }
    }
    Some((id?, secret?, token))
}

#[cfg(test)]
mod tests {
    use super::keys_in;

    #[test]
    fn reads_the_named_profile_only() {
        let text = "[default]\naws_access_key_id = A1\naws_secret_access_key = S1\n\n\
                    # a comment\n[ci]\naws_access_key_id=A2\naws_secret_access_key=S2\n\
                    aws_session_token = T2\n[empty]\nregion = eu-west-1\n";
        assert_eq!(
            keys_in(text, "default"),
            Some(("A1".into(), "S1".into(), None))
        );
        assert_eq!(
            keys_in(text, "ci"),
            Some(("A2".into(), "S2".into(), Some("T2".into())))
        );
        assert_eq!(keys_in(text, "empty"), None);
        assert_eq!(keys_in(text, "absent"), None);
    }
}
