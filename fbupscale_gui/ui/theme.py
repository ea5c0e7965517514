"""The dark theme for a broadcast control room, and a WCAG contrast check.

The room is dim and the screen is read from a distance, so the theme is a dark palette of
neutral greys with large-ish text, and exactly one accent colour (amber). The accent means
"picked" or "primary action" and nothing else: red and green are left alone because a
control room reads them as on-air and preview tallies.

Widgets opt into the few special looks through dynamic properties that the stylesheet
matches, so they stay free of colour code:

* ``primary=True`` on a button: the accent-filled primary action (Run, Pick, Export);
* ``picked=True`` on any frame-like widget: an accent border;
* ``role`` on a label: ``"hint"`` (secondary text), ``"warning"`` or ``"error"``.

Use :func:`set_style_property` to change one of these after the widget is shown; Qt only
re-evaluates a stylesheet selector when the widget is re-polished.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PySide6.QtCore import QBuffer, QByteArray, QDir, QIODevice, QPointF, Qt
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPalette, QPen
from PySide6.QtWidgets import QApplication, QWidget

from fbupscale_gui.storage.atomic import atomic_write_bytes
from fbupscale_gui.storage.weights import user_cache_dir

__all__ = [
    "ACCENT",
    "ACCENT_TEXT",
    "ERROR",
    "HINT",
    "OK",
    "WARNING",
    "ContrastPair",
    "apply_dark_theme",
    "clean_stale_icon_dirs",
    "contrast_pairs",
    "contrast_ratio",
    "dark_palette",
    "relative_luminance",
    "set_style_property",
    "stylesheet",
]

# -- colours ------------------------------------------------------------------------------

WINDOW: Final = "#1f2124"
BASE: Final = "#17191b"
ALT_BASE: Final = "#24272a"
BUTTON: Final = "#2e3135"
BORDER: Final = "#4a4e54"
TEXT: Final = "#e8e8e6"
#: Secondary text (hints, units, placeholders): still >= 4.5:1 on every background.
HINT: Final = "#a9adb3"
DISABLED_TEXT: Final = "#7d8288"
DISABLED_BUTTON: Final = "#26292c"
#: The one accent: picked candidate, primary action, keyboard focus.
ACCENT: Final = "#f0a530"
#: Text on an accent background.
ACCENT_TEXT: Final = "#141414"
#: Selection in lists and text: a quiet blue-grey, so the accent keeps its meaning.
SELECTION: Final = "#3f5872"
SELECTION_TEXT: Final = "#ffffff"
LINK: Final = "#8cc4ff"
WARNING: Final = "#f5c46b"
ERROR: Final = "#ff8a80"
#: A check that passed (the shirt-number badge "✓ 9"); contrast 8:1 on BASE.
OK: Final = "#8fd694"
TOOLTIP_BASE: Final = "#33373c"

#: The base font size in points: text is read from a couple of metres away.
BASE_POINT_SIZE: Final = 11


# -- contrast -----------------------------------------------------------------------------


def relative_luminance(color: QColor) -> float:
    """WCAG 2.x relative luminance of an sRGB colour (alpha ignored), 0 (black) to 1 (white)."""

    def channel(value: float) -> float:
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    return (
        0.2126 * channel(color.redF())
        + 0.7152 * channel(color.greenF())
        + 0.0722 * channel(color.blueF())
    )


def contrast_ratio(fg: QColor, bg: QColor) -> float:
    """WCAG contrast ratio between two colours, from 1.0 (none) to 21.0 (black on white)."""
    a, b = relative_luminance(fg), relative_luminance(bg)
    lighter, darker = max(a, b), min(a, b)
    return (lighter + 0.05) / (darker + 0.05)


@dataclass(frozen=True)
class ContrastPair:
    """One text colour over the background it is drawn on, and the ratio it must reach."""

    name: str
    fg: QColor
    bg: QColor
    minimum: float

    @property
    def ratio(self) -> float:
        return contrast_ratio(self.fg, self.bg)


_TEXT_PAIRS: Final = (
    (QPalette.ColorRole.WindowText, QPalette.ColorRole.Window),
    (QPalette.ColorRole.Text, QPalette.ColorRole.Base),
    (QPalette.ColorRole.Text, QPalette.ColorRole.AlternateBase),
    (QPalette.ColorRole.Text, QPalette.ColorRole.Window),
    (QPalette.ColorRole.ButtonText, QPalette.ColorRole.Button),
    (QPalette.ColorRole.HighlightedText, QPalette.ColorRole.Highlight),
    (QPalette.ColorRole.ToolTipText, QPalette.ColorRole.ToolTipBase),
    (QPalette.ColorRole.PlaceholderText, QPalette.ColorRole.Base),
    (QPalette.ColorRole.Link, QPalette.ColorRole.Base),
    (QPalette.ColorRole.Link, QPalette.ColorRole.Window),
    (QPalette.ColorRole.LinkVisited, QPalette.ColorRole.Base),
    (QPalette.ColorRole.BrightText, QPalette.ColorRole.Window),
)


def contrast_pairs(palette: QPalette | None = None) -> list[ContrastPair]:
    """Every text/background pair of the palette, plus the stylesheet's own colours.

    Active and inactive text must reach 4.5:1 (WCAG AA for body text); disabled text 3:1,
    so a greyed-out control still reads as a control.
    """
    pal = palette if palette is not None else dark_palette()
    groups = (
        ("active", QPalette.ColorGroup.Active, 4.5),
        ("inactive", QPalette.ColorGroup.Inactive, 4.5),
        ("disabled", QPalette.ColorGroup.Disabled, 3.0),
    )
    pairs: list[ContrastPair] = []
    for group_name, group, minimum in groups:
        for fg_role, bg_role in _TEXT_PAIRS:
            pairs.append(
                ContrastPair(
                    f"{group_name} {fg_role.name} on {bg_role.name}",
                    pal.color(group, fg_role),
                    pal.color(group, bg_role),
                    minimum,
                )
            )
    extra = (
        ("primary button text on accent", ACCENT_TEXT, ACCENT),
        ("hint on window", HINT, WINDOW),
        ("hint on base", HINT, BASE),
        ("hint on button", HINT, BUTTON),
        ("warning on window", WARNING, WINDOW),
        ("warning on base", WARNING, BASE),
        ("error on window", ERROR, WINDOW),
        ("error on base", ERROR, BASE),
        ("accent on window", ACCENT, WINDOW),
        ("text on tooltip", TEXT, TOOLTIP_BASE),
    )
    for name, fg, bg in extra:
        pairs.append(ContrastPair(name, QColor(fg), QColor(bg), 4.5))
    pairs.append(
        ContrastPair(
            "disabled text on disabled button", QColor(DISABLED_TEXT), QColor(DISABLED_BUTTON), 3.0
        )
    )
    return pairs


# -- palette and stylesheet ---------------------------------------------------------------


def dark_palette() -> QPalette:
    """The dark palette; every role set explicitly for all three colour groups."""
    pal = QPalette()
    roles: dict[QPalette.ColorRole, str] = {
        QPalette.ColorRole.Window: WINDOW,
        QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: BASE,
        QPalette.ColorRole.AlternateBase: ALT_BASE,
        QPalette.ColorRole.Text: TEXT,
        QPalette.ColorRole.Button: BUTTON,
        QPalette.ColorRole.ButtonText: TEXT,
        QPalette.ColorRole.BrightText: "#ffffff",
        QPalette.ColorRole.Highlight: SELECTION,
        QPalette.ColorRole.HighlightedText: SELECTION_TEXT,
        QPalette.ColorRole.ToolTipBase: TOOLTIP_BASE,
        QPalette.ColorRole.ToolTipText: TEXT,
        QPalette.ColorRole.PlaceholderText: HINT,
        QPalette.ColorRole.Link: LINK,
        QPalette.ColorRole.LinkVisited: "#c6a8ff",
        QPalette.ColorRole.Light: "#45494e",
        QPalette.ColorRole.Midlight: "#383b40",
        QPalette.ColorRole.Mid: "#2a2d31",
        QPalette.ColorRole.Dark: "#141517",
        QPalette.ColorRole.Shadow: "#000000",
        QPalette.ColorRole.Accent: ACCENT,
    }
    for role, colour in roles.items():
        for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
            pal.setColor(group, role, QColor(colour))
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor(colour))
    disabled = QPalette.ColorGroup.Disabled
    for role in (
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.Text,
        QPalette.ColorRole.ButtonText,
        QPalette.ColorRole.PlaceholderText,
        QPalette.ColorRole.HighlightedText,
        QPalette.ColorRole.ToolTipText,
        QPalette.ColorRole.Link,
        QPalette.ColorRole.LinkVisited,
        QPalette.ColorRole.BrightText,
    ):
        pal.setColor(disabled, role, QColor(DISABLED_TEXT))
    pal.setColor(disabled, QPalette.ColorRole.Button, QColor(DISABLED_BUTTON))
    pal.setColor(disabled, QPalette.ColorRole.Highlight, QColor("#2f3338"))
    return pal


_CHECK_PATH: str | None = None
#: Earlier releases drew the check mark into a QTemporaryDir (``fbupscale-gui-XXXXXX`` in the
#: system temporary folder), which a window ended by SIGTERM or SIGKILL left behind.
_LEGACY_ICON_DIR: Final = re.compile(r"^fbupscale-gui-[A-Za-z0-9]{6}$")


def _check_mark_png() -> bytes:
    image = QImage(36, 36, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    p = QPainter(image)
    p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    pen = QPen(QColor(SELECTION_TEXT), 5.0)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    p.setPen(pen)
    p.drawPolyline([QPointF(8, 19), QPointF(15, 26), QPointF(28, 10)])
    p.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")  # type: ignore[call-overload]  # str at run time
    buffer.close()
    return bytes(data.data())


def _check_mark_path() -> str:
    """A white check mark PNG for the check boxes' indicator, in the app's cache folder.

    Qt style sheets can only take indicator images from files, and the default dark-on-dark
    check box is hard to see from a distance, so the theme draws its own. The file is named
    by its content and kept (nothing is left behind in the system temporary folder when the
    window is killed); "" when the cache folder cannot be written (the style's own mark
    shows). Stale folders of earlier releases are removed on the way.
    """
    global _CHECK_PATH
    if _CHECK_PATH is None:
        png = _check_mark_png()
        target = user_cache_dir() / "theme" / f"check-{hashlib.sha256(png).hexdigest()[:12]}.png"
        try:
            if not target.is_file() or target.read_bytes() != png:
                atomic_write_bytes(target, png)
        except OSError:
            return ""
        clean_stale_icon_dirs()
        _CHECK_PATH = str(target)
    return _CHECK_PATH


def clean_stale_icon_dirs(temp: str | Path | None = None, older_than_s: float = 60.0) -> int:
    """Remove this user's ``fbupscale-gui-XXXXXX`` folders left in the temporary folder by
    earlier releases (only ones holding nothing but their check mark, and not just made).
    Returns how many were removed; errors are ignored."""
    base = Path(temp) if temp is not None else Path(QDir.tempPath())
    removed = 0
    try:
        candidates = [p for p in base.iterdir() if _LEGACY_ICON_DIR.match(p.name)]
    except OSError:
        return 0
    uid = os.getuid() if hasattr(os, "getuid") else None
    for folder in candidates:
        with contextlib.suppress(OSError):
            info = folder.lstat()
            if folder.is_symlink() or not folder.is_dir():
                continue
            if uid is not None and info.st_uid != uid:
                continue
            if {c.name for c in folder.iterdir()} - {"check.png"}:
                continue  # not one of ours
            if time.time() - info.st_mtime < older_than_s:
                continue
            shutil.rmtree(folder)
            removed += 1
    return removed


def stylesheet() -> str:
    """A light stylesheet on top of the palette: roomy controls, the accent, label roles."""
    check = _check_mark_path().replace("\\", "/")
    check_image = f" image: url({check});" if check else ""
    return f"""
QWidget {{ font-size: {BASE_POINT_SIZE}pt; }}
QToolTip {{ color: {TEXT}; background: {TOOLTIP_BASE}; border: 1px solid {BORDER}; padding: 4px; }}
QGroupBox {{ border: 1px solid {BORDER}; border-radius: 4px; margin-top: 1.2em; padding: 8px 6px 6px 6px; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 8px; padding: 0 4px; font-weight: 600; }}
QPushButton, QToolButton {{
    color: {TEXT}; background: {BUTTON}; border: 1px solid {BORDER}; border-radius: 4px;
    padding: 4px 10px; min-height: 1.4em;
}}
QPushButton:hover, QToolButton:hover {{ border-color: #6b7078; }}
QPushButton:pressed, QToolButton:pressed {{ background: #3a3e43; }}
QPushButton:checked, QToolButton:checked {{ background: {SELECTION}; color: {SELECTION_TEXT}; border-color: #6b8ab0; }}
QPushButton:disabled, QToolButton:disabled {{ color: {DISABLED_TEXT}; background: {DISABLED_BUTTON}; border-color: #34373b; }}
QPushButton:focus, QToolButton:focus {{ border-color: {ACCENT}; }}
QPushButton[primary="true"] {{ background: {ACCENT}; color: {ACCENT_TEXT}; border-color: {ACCENT}; font-weight: 600; }}
QPushButton[primary="true"]:hover {{ background: #f5b550; }}
QPushButton[primary="true"]:disabled {{ background: {DISABLED_BUTTON}; color: {DISABLED_TEXT}; border-color: #34373b; }}
QLineEdit, QPlainTextEdit, QTextEdit {{
    color: {TEXT}; background: {BASE}; border: 1px solid {BORDER}; border-radius: 3px;
    padding: 3px 5px; selection-background-color: {SELECTION}; selection-color: {SELECTION_TEXT};
}}
QLineEdit:focus, QPlainTextEdit:focus, QTextEdit:focus {{
    border-color: {ACCENT};
}}
QLineEdit:disabled, QPlainTextEdit:disabled {{
    color: {DISABLED_TEXT}; background: {WINDOW};
}}
QPlainTextEdit[manual="true"] {{ border: 2px solid {WARNING}; }}
QFrame#sceneCard {{ background: {ALT_BASE}; border: 1px solid #383c41; border-radius: 4px; }}
QScrollArea {{ border: none; }}
QCheckBox {{ spacing: 8px; }}
QCheckBox::indicator {{ width: 16px; height: 16px; border: 2px solid #9aa0a6; border-radius: 3px; background: {BASE}; }}
QCheckBox::indicator:hover {{ border-color: {TEXT}; }}
QCheckBox::indicator:checked {{ background: {SELECTION}; border-color: #9fc0e6;{check_image} }}
QCheckBox::indicator:disabled {{ border-color: #4a4e54; background: {WINDOW}; }}
QCheckBox::indicator:checked:disabled {{ background: #2f3338; }}
QCheckBox:focus {{ color: {TEXT}; }}
QLabel[role="hint"] {{ color: {HINT}; }}
QLabel[role="warning"] {{ color: {WARNING}; font-weight: 600; }}
QLabel[role="error"] {{ color: {ERROR}; font-weight: 600; }}
QLabel[role="ok"] {{ color: {OK}; font-weight: 600; }}
*[picked="true"] {{ border: 3px solid {ACCENT}; }}
"""


def set_style_property(widget: QWidget, name: str, value: object) -> None:
    """Set a dynamic property the stylesheet matches on, and re-polish so it shows now."""
    widget.setProperty(name, value)
    style = widget.style()
    style.unpolish(widget)
    style.polish(widget)
    widget.update()


def apply_dark_theme(app: QApplication) -> None:
    """Apply the control-room theme to the whole application (Fusion style + palette + sheet)."""
    app.setStyle("Fusion")
    app.setPalette(dark_palette())
    font = QFont(app.font())
    if font.pointSizeF() < BASE_POINT_SIZE:
        font.setPointSizeF(BASE_POINT_SIZE)
        app.setFont(font)
    app.setStyleSheet(stylesheet())
