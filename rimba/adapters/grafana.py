"""The Grafana adapter: `rimba dashboards publish` uploads the bundle to a running Grafana through grafana-client.

Idempotent by uid: folders are created when missing, the data source is created or updated, every
dashboard is saved with overwrite (same uid, new version), and each public page gets its public
dashboard once. Bad credentials, an unreachable server and a Grafana too old for public dashboards
each give one clear line (a ConfigError), never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path

from rimba.errors import ConfigError

MIN_MAJOR = 10  # public dashboards (GA) and IANA time zones per dashboard


def _client(url: str, token: str):
    from grafana_client import GrafanaApi

    return GrafanaApi.from_url(url, credential=token or None, timeout=10.0)


def _call(fn, what: str, url: str):
    from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaUnauthorizedError

    try:
        return fn()
    except GrafanaUnauthorizedError:
        raise ConfigError(f"Grafana at {url} refused the credentials while {what}; pass a service-account "
                          "token with --token-file or GRAFANA_TOKEN (Editor role, or Admin for the data source)") from None
    except GrafanaClientError as err:
        if getattr(err, "status_code", None) == 403:
            raise ConfigError(f"Grafana at {url} does not allow {what} for this token; it needs the Admin role")\
                from None
        raise
    except GrafanaException as err:
        raise ConfigError(f"Grafana at {url} failed while {what}: {err}") from None
    except OSError as err:
        raise ConfigError(f"cannot reach Grafana at {url} ({err.__class__.__name__}); is the URL right?") from None


def _exists(fn) -> bool:
    from grafana_client.client import GrafanaClientError

    try:
        fn()
        return True
    except GrafanaClientError as err:
        if getattr(err, "status_code", None) == 404:
            return False
        raise


def publish(bundle_dir, url: str, token: str, datasource: dict | None = None) -> str:
    """Upload the bundle in `bundle_dir` to the Grafana at `url`; return a one-line summary."""
    import niquests

    bundle = Path(bundle_dir)
    if not (bundle / "public-dashboards.json").exists():
        raise ConfigError(f"no bundle in {bundle}; build it first: rimba dashboards build --out {bundle}")
    api = _client(url, token)
    try:
        health = _call(api.health.check, "checking its version", url)
    except niquests.exceptions.ConnectionError:
        raise ConfigError(f"cannot reach Grafana at {url}; is the URL right and the server up?") from None
    version = str(health.get("version", "0"))
    major = int(version.split(".")[0]) if version.split(".")[0].isdigit() else 0
    if major < MIN_MAJOR:
        raise ConfigError(f"Grafana {version} at {url} is too old: Rimba's dashboards need {MIN_MAJOR} or later "
                          "(public dashboards, per-dashboard time zones)")
    folders = {}
    created = 0
    for path in sorted((bundle / "dashboards").glob("*/*.json")):
        folder_uid = path.parent.name
        if folder_uid not in folders:
            title = folder_uid.replace("-", " ").capitalize()
            if not _call(lambda u=folder_uid: _exists(lambda: api.folder.get_folder(u)), "reading folders", url):
                _call(lambda t=title, u=folder_uid: api.folder.create_folder(t, uid=u), "creating a folder", url)
                created += 1
            folders[folder_uid] = True
    if datasource is not None:
        uid = datasource["uid"]
        if _call(lambda: _exists(lambda: api.datasource.get_datasource_by_uid(uid)), "reading data sources", url):
            _call(lambda: api.datasource.update_datasource_by_uid(uid, datasource), "updating the data source", url)
        else:
            _call(lambda: api.datasource.create_datasource(datasource), "creating the data source", url)
    dashboards = 0
    for path in sorted((bundle / "dashboards").glob("*/*.json")):
        model = json.loads(path.read_text(encoding="utf-8"))
        model.pop("id", None)
        body = {"dashboard": model, "folderUid": path.parent.name, "overwrite": True, "message": "rimba publish"}
        _call(lambda b=body: api.dashboard.update_dashboard(b), f"saving dashboard {model['uid']}", url)
        dashboards += 1
    public = json.loads((bundle / "public-dashboards.json").read_text(encoding="utf-8"))["public"]
    shared = 0
    for uid in public:
        path = f"/dashboards/uid/{uid}/public-dashboards"
        if not _call(lambda p=path: _exists(lambda: api.client.GET(p)), "reading public dashboards", url):
            _call(lambda p=path: api.client.POST(p, json={"isEnabled": True, "share": "public"}),
                  "making a page public", url)
            shared += 1
    return (f"Grafana {version}: {created} folder(s) created, {dashboards} dashboards saved, "
            f"{shared} page(s) made public ({len(public) - shared} already were)")


def datasource_json(settings) -> dict:
    """The data source for the API (secrets go to Grafana, never to the terminal or the bundle)."""
    ds = {"uid": "rimba-influxdb", "name": "Rimba InfluxDB", "type": "influxdb", "access": "proxy",
          "url": settings.influx_url, "isDefault": True,
          "jsonData": {"dbName": settings.influx_db, "httpMode": "POST", "timeInterval": "1m"}, "secureJsonData": {}}
    if settings.influx_token:
        ds["jsonData"]["httpHeaderName1"] = "Authorization"
        ds["secureJsonData"]["httpHeaderValue1"] = f"Token {settings.influx_token}"
    elif settings.influx_user:
        ds["user"] = settings.influx_user
        ds["secureJsonData"]["password"] = settings.influx_password
    return ds
