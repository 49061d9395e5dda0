"""A plain RFC 8628 device client on httpx: a thing without a browser.

It authenticates with client_secret_basic, asks the device authorization endpoint for a user
code, and polls the token endpoint at the server's interval: ``authorization_pending`` means
wait, ``slow_down`` adds 5 seconds to the interval (RFC 8628 3.5), anything else ends the poll.
Every poll's answer is kept in :attr:`DeviceClient.polls` for the test to look at.
"""
from __future__ import annotations

import ssl
import time

import httpx

GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class DeviceGrantError(AssertionError):
    def __init__(self, status: int, body: dict) -> None:
        super().__init__(f"HTTP {status} {body}")
        self.status, self.body = status, body


class DeviceClient:
    def __init__(self, metadata: dict, client_id: str, client_secret: str, ca_file: str) -> None:
        self.metadata = metadata
        self.http = httpx.Client(verify=ssl.create_default_context(cafile=ca_file),
                                 auth=(client_id, client_secret), timeout=30)
        self.polls: list[tuple[int, dict]] = []

    def close(self) -> None:
        self.http.close()

    def start(self, scope: str = "openid profile") -> dict:
        response = self.http.post(self.metadata["device_authorization_endpoint"], data={"scope": scope})
        if response.status_code != 200:
            raise DeviceGrantError(response.status_code, response.json())
        return response.json()

    def poll_once(self, device_code: str) -> tuple[int, dict]:
        response = self.http.post(self.metadata["token_endpoint"],
                                  data={"grant_type": GRANT, "device_code": device_code})
        result = (response.status_code, response.json())
        self.polls.append(result)
        return result

    def poll(self, device: dict, timeout: float = 60) -> dict:
        """Poll until tokens (returned) or an error other than pending/slow_down (raised)."""
        interval = device.get("interval", 5)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(interval)
            status, body = self.poll_once(device["device_code"])
            if status == 200:
                return body
            if body.get("error") == "slow_down":
                interval += 5
            elif body.get("error") != "authorization_pending":
                raise DeviceGrantError(status, body)
        raise TimeoutError(f"device grant still pending after {timeout}s: {self.polls}")
