"""Settings persisted with QSettings; the schema and validation live in core.settings."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QObject, QSettings, Signal

if TYPE_CHECKING:
    from fbupscale_gui.core.settings import Settings

__all__ = ["SettingsModel", "default_store", "read_window_geometry"]

log = logging.getLogger(__name__)

_GROUP = "settings"
_GEOMETRY = "window/geometry"
_STATE = "window/state"


def default_store() -> QSettings:
    """The application's QSettings (per user)."""
    return QSettings("fbupscale", "fbupscale-gui")


def read_window_geometry(store: QSettings) -> tuple[QByteArray | None, QByteArray | None]:
    """Saved (geometry, state) of the main window; cheap, usable before anything else loads."""
    geometry = store.value(_GEOMETRY)
    state = store.value(_STATE)
    return (
        geometry if isinstance(geometry, QByteArray) else None,
        state if isinstance(state, QByteArray) else None,
    )


class SettingsModel(QObject):
    """The application's settings, read once and written on every change.

    A stored value that fails validation falls back to its default and is logged
    (:meth:`Settings.from_mapping`); :meth:`update` refuses bad values with a
    :class:`fbupscale_gui.core.settings.SettingsError` naming the setting.
    """

    changed = Signal(object)  # Settings

    def __init__(self, store: QSettings | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._store = store if store is not None else default_store()
        self._settings = self._read()

    @property
    def settings(self) -> Settings:
        return self._settings

    @property
    def store(self) -> QSettings:
        return self._store

    def _read(self) -> Settings:
        from fbupscale_gui.core.settings import SPECS, Settings

        raw: dict[str, object] = {}
        self._store.beginGroup(_GROUP)
        try:
            for spec in SPECS:
                if self._store.contains(spec.name):
                    raw[spec.name] = self._store.value(spec.name)
        finally:
            self._store.endGroup()
        return Settings.from_mapping(raw)

    def update(self, **changes: object) -> Settings:
        """Validate, apply and persist ``changes``; emits ``changed``."""
        return self.set(self._settings.replace(**changes))

    def set(self, settings: Settings) -> Settings:
        self._settings = settings
        self._store.beginGroup(_GROUP)
        try:
            for name, value in settings.to_mapping().items():
                self._store.setValue(name, value)
        finally:
            self._store.endGroup()
        # Atomic on disk: Qt 6's QSettings writes the file through QSaveFile (a temporary file
        # in the same folder, flushed, then renamed over the old one), so a crash mid-write
        # leaves the previous settings intact. sync() also reports a failed write (status()).
        self._store.sync()
        self.changed.emit(settings)
        return settings

    # -- window geometry ------------------------------------------------------------------

    def window_geometry(self) -> tuple[QByteArray | None, QByteArray | None]:
        return read_window_geometry(self._store)

    def save_window_geometry(self, geometry: QByteArray, state: QByteArray) -> None:
        self._store.setValue(_GEOMETRY, geometry)
        self._store.setValue(_STATE, state)
        self._store.sync()
