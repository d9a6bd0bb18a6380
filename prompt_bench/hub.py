"""One hub probe for every hub source (backbones and datasets): is the Hugging Face hub reachable now?

huggingface_hub and datasets retry an unreachable host for ~25 s per file, so one quick probe
decides first and an offline machine fails in seconds. Torch-free.
"""

from __future__ import annotations

HUB_PROBE_TIMEOUT_S = 3.0  # one HEAD request to the hub endpoint decides online vs offline


def hub_is_reachable() -> bool:
    """Whether the hub endpoint answers within HUB_PROBE_TIMEOUT_S (False in HF offline mode).

    The request goes through huggingface_hub's session, so it honours HTTPS_PROXY and friends.
    """
    from huggingface_hub import constants, get_session

    if constants.HF_HUB_OFFLINE:
        return False
    try:
        # Any HTTP answer, even an error status, means the host is reachable.
        get_session().head(constants.ENDPOINT, timeout=HUB_PROBE_TIMEOUT_S)
    except Exception:  # DNS failure, refused, timeout, proxy error: all mean "offline"
        return False
    return True
