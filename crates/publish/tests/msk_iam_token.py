"""AWS's own MSK IAM signer (aws-msk-iam-sasl-signer-python), with fixed
credentials and a fixed signing time, so tests/msk_iam.rs can compare tokens
byte for byte. Prints: token, expiry in ms, the signer's User-Agent."""

import datetime
import sys

import botocore.auth
from botocore.credentials import CredentialProvider, Credentials
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider as signer

access_key, secret_key, session_token, region, epoch = sys.argv[1:6]
at = datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc)
# botocore reads the clock through this one function when it signs.
botocore.auth.get_current_datetime = lambda *args, **kwargs: at


class Fixed(CredentialProvider):
    def load(self):
        return Credentials(access_key, secret_key, session_token or None)


token, expiry_ms = signer.generate_auth_token_from_credentials_provider(region, Fixed())
print(token)
print(expiry_ms)
print(signer.__get_user_agent__())
