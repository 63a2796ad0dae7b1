//! Who is calling, as a stable principal: the cache namespace of a caller under
//! `CACHE_SCOPE=caller`, and the owner of what a caller submits.

use std::fmt;

/// What API Gateway's authorizer says about a caller, without any event type.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerClaims {
    /// IAM: the principal ARN (`userArn`).
    pub user_arn: Option<String>,
    /// IAM through a Cognito identity pool: the identity id.
    pub cognito_identity_id: Option<String>,
    /// JWT authorizer: the `iss` claim.
    pub jwt_issuer: Option<String>,
    /// JWT authorizer: the `sub` claim.
    pub jwt_subject: Option<String>,
}

/// A principal that stays the same across a caller's sessions and cannot be chosen by another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An IAM user, root or federated user: its ARN.
    IamUser(String),
    /// An assumed role: the role, whatever session name the caller picked.
    Role { account: String, role: String },
    /// A Cognito identity-pool identity (they all share the pool's role session).
    Cognito(String),
    /// A JWT subject of an issuer: `sub` is unique only within its issuer.
    Jwt { issuer: String, subject: String },
}

fn non_empty(value: Option<&String>) -> Option<&str> {
    value.map(|s| s.trim()).filter(|s| !s.is_empty())
}

/// `arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE/SESSION` → (account, role).
fn assumed_role(arn: &str) -> Option<(&str, &str)> {
    let mut parts = arn.splitn(6, ':');
    let (_arn, _partition, service, _region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let role = resource.strip_prefix("assumed-role/")?.split('/').next()?;
    (service == "sts" && !account.is_empty() && !role.is_empty()).then_some((account, role))
}

impl Principal {
    /// The principal of a caller, or `None` when the request carries no identity.
    pub fn from_claims(claims: &CallerClaims) -> Option<Self> {
        if let Some(id) = non_empty(claims.cognito_identity_id.as_ref()) {
            return Some(Self::Cognito(id.to_owned()));
        }
        if let Some(arn) = non_empty(claims.user_arn.as_ref()) {
            return Some(match assumed_role(arn) {
                Some((account, role)) => Self::Role {
                    account: account.to_owned(),
                    role: role.to_owned(),
                },
                None => Self::IamUser(arn.to_owned()),
            });
        }
        match (
            non_empty(claims.jwt_issuer.as_ref()),
            non_empty(claims.jwt_subject.as_ref()),
        ) {
            (Some(issuer), Some(subject)) => Some(Self::Jwt {
                issuer: issuer.to_owned(),
                subject: subject.to_owned(),
            }),
            _ => None,
        }
    }
}

impl fmt::Display for Principal {
    /// The namespace form; parts are JSON strings so no value can imitate another's separator.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
        match self {
            Self::IamUser(arn) => write!(f, "iam:{}", quoted(arn)),
            Self::Role { account, role } => {
                write!(f, "role:{}/{}", quoted(account), quoted(role))
            }
            Self::Cognito(id) => write!(f, "cognito:{}", quoted(id)),
            Self::Jwt { issuer, subject } => {
                write!(f, "jwt:{}/{}", quoted(issuer), quoted(subject))
            }
        }
    }
}

/// The owner (and cache namespace) of what a tenant does: its key's callers and its uploads
/// (`batch-input/{tenant}/…`) are the same owner.
pub fn tenant_owner(tenant: &str) -> String {
    format!("tenant:{}", serde_json::Value::String(tenant.to_owned()))
}

/// The tenant an owner written by [`tenant_owner`] names; `None` for any other owner.
pub fn owner_tenant(owner: &str) -> Option<String> {
    serde_json::from_str(owner.strip_prefix("tenant:")?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_owner_reads_back_as_its_tenant_and_no_other_owner_does() {
        assert_eq!(
            owner_tenant(&tenant_owner("te\"am")).as_deref(),
            Some("te\"am")
        );
        assert_eq!(owner_tenant(r#"role:"1"/"r""#), None);
        assert_eq!(owner_tenant("tenant:acme"), None);
    }

    fn iam(arn: &str) -> CallerClaims {
        CallerClaims {
            user_arn: Some(arn.into()),
            ..CallerClaims::default()
        }
    }

    #[test]
    fn an_assumed_role_is_the_role_whatever_the_session_name() {
        let a = Principal::from_claims(&iam(
            "arn:aws:sts::123456789012:assumed-role/app-role/alice",
        ));
        let b = Principal::from_claims(&iam(
            "arn:aws:sts::123456789012:assumed-role/app-role/chosen-by-mallory",
        ));
        assert_eq!(a, b);
        assert_eq!(
            a,
            Some(Principal::Role {
                account: "123456789012".into(),
                role: "app-role".into()
            })
        );
        let other_account = Principal::from_claims(&iam(
            "arn:aws:sts::210987654321:assumed-role/app-role/alice",
        ));
        assert_ne!(a, other_account);
    }

    #[test]
    fn users_cognito_identities_and_jwt_subjects_are_their_own() {
        let user = "arn:aws:iam::123456789012:user/ops/bob";
        assert_eq!(
            Principal::from_claims(&iam(user)),
            Some(Principal::IamUser(user.into()))
        );
        // Every identity-pool caller arrives as the same role session: the identity decides.
        let pool_role =
            "arn:aws:sts::123456789012:assumed-role/Cognito_Auth_Role/CognitoIdentityCredentials";
        let carol = CallerClaims {
            cognito_identity_id: Some("us-east-1:1111".into()),
            ..iam(pool_role)
        };
        let dave = CallerClaims {
            cognito_identity_id: Some("us-east-1:2222".into()),
            ..iam(pool_role)
        };
        assert_ne!(
            Principal::from_claims(&carol),
            Principal::from_claims(&dave)
        );
        let jwt = |iss: &str, sub: &str| CallerClaims {
            jwt_issuer: Some(iss.into()),
            jwt_subject: Some(sub.into()),
            ..CallerClaims::default()
        };
        assert_ne!(
            Principal::from_claims(&jwt("https://a.example", "42")),
            Principal::from_claims(&jwt("https://b.example", "42"))
        );
        assert_eq!(Principal::from_claims(&jwt("", "42")), None);
        assert_eq!(Principal::from_claims(&CallerClaims::default()), None);
    }

    #[test]
    fn namespaces_cannot_imitate_each_other() {
        let a = Principal::Jwt {
            issuer: "x/\"y".into(),
            subject: "z".into(),
        };
        let b = Principal::Jwt {
            issuer: "x".into(),
            subject: "\"y/z".into(),
        };
        assert_ne!(a.to_string(), b.to_string());
        assert_eq!(tenant_owner("team-a"), r#"tenant:"team-a""#);
        // No principal's form is a tenant's.
        assert!(!a.to_string().starts_with("tenant:"));
        assert_eq!(
            Principal::Role {
                account: "1".into(),
                role: "r".into()
            }
            .to_string(),
            r#"role:"1"/"r""#
        );
    }
}
