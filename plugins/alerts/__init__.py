"""Low-balance, limit and expiry alerts by signed webhook and e-mail (README "Alerts").

* an account's balance crossing its threshold downward (``tokone alerts set ACCOUNT
  --threshold 20``, or a group default in ``[plugins.alerts.groups.NAME] threshold``);
* a key's period (or total) limit, or an account's budget, reaching 80% and 100%
  (``key_limit_percents``);
* a key expiring within ``expiry_days`` (3).

Each event is queued once (whichever process sees it first; :mod:`.detect`) per destination
and delivered by a background task with retries and backoff, its status recorded in
``alert_deliveries`` (``tokone alerts list``; :mod:`.deliver`). `meter` only notes what to
look at, so alerts never touch a call's hot path (:mod:`.worker`).
"""

from tokone.plugins.alerts.hooks import (
    meter,
    plugin_config_schema,
    register_commands,
    shutdown,
    startup,
)

__all__ = ["meter", "plugin_config_schema", "register_commands", "shutdown", "startup"]
