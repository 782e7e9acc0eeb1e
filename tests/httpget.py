"""One HTTP GET from a test, through the test's reactor (twisted.web's Agent)."""
from twisted.internet import reactor
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers


async def get(url, token=None):
    """``(status code, headers, body)`` of GET ``url`` (``token``: sent in an
    ``Authorization: token ...`` header)."""
    headers = Headers({b"Authorization": [f"token {token}".encode()]}) if token else None
    response = await Agent(reactor).request(b"GET", url.encode(), headers)
    body = await readBody(response)
    return response.code, response.headers, body
