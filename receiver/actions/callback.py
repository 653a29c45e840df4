"""``GET {path}/signin/callback``: Entra ID's redirect back to the action endpoint after
sign-in (the flow itself is signin.py's). A session, then back to the link; or a refusal page,
counted, logged and, when the link it was for is known, audited."""

from __future__ import annotations

import contextlib
import logging

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from receiver.actions import refusals
from receiver.actions.endpoint import Endpoint, for_link, requester
from receiver.actions.identity import SignInError
from receiver.actions.links import LinkError
from receiver.actions.signin import SignIn

__all__ = ["Callback"]

log = logging.getLogger(__name__)


class Callback:
    def __init__(self, endpoint: Endpoint, signin: SignIn) -> None:
        self.e = endpoint
        self.signin = signin

    async def callback(self, request: Request) -> Response:
        """Entra ID's redirect after sign-in: a session, then back to the link."""
        state = request.query_params.get("state", "")
        try:
            done = await self.signin.finish(request)
        except SignInError as exc:
            await self._refused(request, exc)
            response = refusals.refusal(exc.reason, exc.detail)
            self.signin.forget_flow(response, state)
            return response
        except (RedisError, OSError):
            return refusals.store_down()
        self.e.outcomes.labels("signin", "signed_in").inc()
        log.info("signed in at the action endpoint", extra={"tenant_id": done.identity.tid})
        return self.signin.signed_in(done, state)

    async def _refused(self, request: Request, exc: SignInError) -> None:
        """Count and log the refusal; audit it when the link it was for is known."""
        log.warning("sign-in refused: %s", exc.reason, extra={"reason": exc.reason})
        if not exc.return_to:
            self.e.outcomes.labels("signin", exc.reason).inc()
            return
        record = requester(request, "signin")
        token = exc.return_to.removeprefix(self.e.settings.actions.path + "/")
        with contextlib.suppress(LinkError):  # the link is named when it is genuine
            record = for_link(record, self.e.links.signer.verify(token))
        await self.e.audit(record, outcome=exc.reason, by=exc.upn, graph=exc.detail)
