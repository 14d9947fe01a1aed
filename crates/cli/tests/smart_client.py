"""A SMART app's side of the authorization code flow with PKCE, driven by a
real OAuth client library (Authlib's OAuth2Session, installed by .ci/run into
target/smart-client), against a running `confidant serve`.

The app discovers the endpoints (/.well-known/smart-configuration under the
FHIR base, and the CapabilityStatement's oauth-uris), builds the
authorization URL with an S256 challenge (Authlib), the user's browser is
played by plain HTTP with the signed-in session's cookie (the consent page's
form is read and posted back), Authlib exchanges the code (checking `state`),
reads a Patient with the token, and revokes it (RFC 7009).

Input (environment): CONFIDANT_URL, CONFIDANT_COOKIE (the browser session),
CLIENT_ID, REDIRECT_URI, SCOPE, PATIENT_ID. Output: one JSON object on stdout.
Run by crates/cli/tests/it/smart.rs; exits non-zero on any surprise.
"""

import html
import json
import os
import re

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session

base = os.environ["CONFIDANT_URL"]
fhir = base + "/fhir/r4"
browser = {"Cookie": os.environ["CONFIDANT_COOKIE"]}

conf = requests.get(fhir + "/.well-known/smart-configuration", timeout=30).json()
meta = requests.get(fhir + "/metadata", timeout=30).json()
oauth_uris = {}
for ext in meta["rest"][0]["security"]["extension"]:
    if ext["url"].endswith("/oauth-uris"):
        oauth_uris = {e["url"]: e["valueUri"] for e in ext["extension"]}
assert oauth_uris["authorize"] == conf["authorization_endpoint"], (oauth_uris, conf)
assert oauth_uris["token"] == conf["token_endpoint"], (oauth_uris, conf)

client = OAuth2Session(
    os.environ["CLIENT_ID"],
    scope=os.environ["SCOPE"],
    redirect_uri=os.environ["REDIRECT_URI"],
    code_challenge_method="S256",
    token_endpoint_auth_method="none",
)
verifier = generate_token(64)
url, state = client.create_authorization_url(conf["authorization_endpoint"], code_verifier=verifier, aud=fhir)

# The user's browser: the consent page, then "Allow".
page = requests.get(url, headers=browser, allow_redirects=False, timeout=30)
assert page.status_code == 200, (page.status_code, page.headers.get("location"), page.text[:500])
fields = {
    html.unescape(k): html.unescape(v)
    for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text)
}
fields["decision"] = "allow"
answer = requests.post(conf["authorization_endpoint"], data=fields, headers=browser, allow_redirects=False, timeout=30)
assert answer.status_code == 303, (answer.status_code, answer.text[:500])
callback = answer.headers["location"]
assert callback.startswith(os.environ["REDIRECT_URI"] + "?"), callback

# The app again: Authlib checks state, sends the code with its verifier.
token = client.fetch_token(
    conf["token_endpoint"], authorization_response=callback, state=state, code_verifier=verifier
)
read = client.get(fhir + "/Patient/" + os.environ["PATIENT_ID"], timeout=30)
revoked = client.revoke_token(conf["revocation_endpoint"], token=token["access_token"])
after = requests.get(
    fhir + "/Patient/" + os.environ["PATIENT_ID"],
    headers={"Authorization": "Bearer " + token["access_token"]},
    timeout=30,
)
print(
    json.dumps(
        {
            "consent_page_csp": page.headers.get("content-security-policy"),
            "token_type": token["token_type"],
            "scope": token["scope"],
            "expires_in": token["expires_in"],
            "read_status": read.status_code,
            "read_id": read.json().get("id"),
            "revoke_status": revoked.status_code,
            "after_revoke_status": after.status_code,
            "access_token": token["access_token"],
        }
    )
)
