"""The main window's actions, toolbar and menus, and when each action is enabled.

The window keeps every QAction as an attribute (``window.run_action`` ...), so its panels, the
shortcuts and the tests reach them there; these functions make them, lay them out in the toolbar
and the menus, and enable them from the session's state (:func:`update_actions`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

from fbupscale_gui.ui.theme import set_style_property

if TYPE_CHECKING:
    from PySide6.QtGui import QAction, QKeySequence
    from PySide6.QtWidgets import QPushButton

    from fbupscale_gui.ui.main_window import MainWindow

__all__ = ["build_actions", "build_menus", "build_toolbar", "update_actions"]


def _action(
    window: MainWindow,
    text: str,
    slot: object,
    shortcuts: list[QKeySequence | str] | None = None,
    tip: str = "",
) -> QAction:
    from PySide6.QtGui import QAction, QKeySequence

    action = QAction(text, window)
    if shortcuts:
        action.setShortcuts([QKeySequence(s) if isinstance(s, str) else s for s in shortcuts])
    keys = ", ".join(
        QKeySequence(s).toString() if isinstance(s, str) else s.toString() for s in shortcuts or []
    )
    action.setToolTip(f"{tip or text.replace('…', '')}" + (f" ({keys})" if keys else ""))
    action.triggered.connect(slot)
    window.addAction(action)  # shortcuts work even when the menu bar is hidden
    return action


def build_actions(window: MainWindow) -> None:
    from PySide6.QtGui import QAction, QKeySequence

    window.open_action = _action(
        window,
        "Open…",
        window.open_files,
        [QKeySequence(QKeySequence.StandardKey.Open)],
        "Open cutout files",
    )
    window.open_folder_action = _action(
        window, "Open folder…", window.open_folder, ["Ctrl+Alt+O"], "Open a folder of cutouts"
    )
    window.open_clip_action = _action(
        window,
        "Open clip…",
        window.open_clip,
        ["Ctrl+Shift+O"],
        "Open a match clip: scrub, cut regions, batch-upscale a range",
    )
    window.paste_action = _action(
        window,
        "Paste cutout",
        window.paste,
        [QKeySequence(QKeySequence.StandardKey.Paste)],
        "Paste an image",
    )
    window.paste_action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
    window.cutouts.addAction(window.paste_action)
    window.run_action = _action(
        window, "Run", window.run_selected, ["Ctrl+R", "F5"], "Queue the selected cutouts"
    )
    window.cancel_action = _action(
        window, "Cancel", window.cancel, ["Esc"], "Stop the running job and drop the queue"
    )
    window.export_action = _action(
        window,
        "Export picks",
        window.export_all,
        ["Ctrl+E"],
        "Export every cutout's picked candidate",
    )
    window.export_current_action = _action(
        window, "Export current pick", window.export_current, ["Ctrl+Shift+E"]
    )
    window.settings_action = _action(
        window,
        "Settings…",
        window.open_settings,
        [QKeySequence(QKeySequence.StandardKey.Preferences)],
    )
    window.sessions_action = _action(
        window,
        "Sessions…",
        window.open_sessions,
        ["Ctrl+Shift+S"],
        "Open, create, rename, archive or delete sessions (work is saved as it is made)",
    )
    window.rerun_action = _action(
        window,
        "Re-run interrupted jobs",
        window.rerun_interrupted,
        [],
        "Queue again the jobs that were running or waiting when fbupscale stopped",
    )
    window.models_action = _action(
        window,
        "Super-resolution models…",
        window.open_models,
        [],
        "Add and remove super-resolution models (SPAN, ESRGAN, Compact, SwinIR, …)",
    )
    window.flux_models_action = _action(
        window,
        "FLUX models…",
        window.open_flux_models,
        [],
        "FLUX.1-dev, its ControlNet and LoRAs: what is found, what is missing, how to get it",
    )
    window.next_action = _action(window, "Next cutout", window.next_cutout, ["PgDown", "Alt+Right"])
    window.prev_action = _action(
        window, "Previous cutout", window.previous_cutout, ["PgUp", "Alt+Left"]
    )
    window.quit_action = _action(
        window, "Quit", window.close, [QKeySequence(QKeySequence.StandardKey.Quit)]
    )
    window.pick_actions = []
    for i in range(9):
        action = QAction(f"Pick tile {i + 1}", window)
        action.setShortcut(QKeySequence(str(i + 1)))
        action.setData(i)
        action.triggered.connect(window._on_pick_action)
        window.addAction(action)
        window.pick_actions.append(action)


def build_toolbar(window: MainWindow) -> None:
    from PySide6.QtWidgets import QComboBox, QToolBar

    from fbupscale_gui.state.engine_choice import ENGINE_LABELS, ENGINE_LICENCES, ENGINES

    bar = QToolBar("Main")
    bar.setObjectName("mainToolbar")
    bar.setMovable(False)
    bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    bar.addAction(window.open_action)
    bar.addAction(window.open_folder_action)
    bar.addSeparator()
    bar.addWidget(QLabel(" Engine "))
    window.engine_combo = QComboBox()
    window.engine_combo.setToolTip(
        "Which engine Run uses (Engine ▸ Super-resolution models… and FLUX models…)"
    )
    for engine in ENGINES:
        window.engine_combo.addItem(ENGINE_LABELS[engine], engine)
        window.engine_combo.setItemData(
            window.engine_combo.count() - 1,
            f"Licence: {ENGINE_LICENCES[engine]}",
            Qt.ItemDataRole.ToolTipRole,
        )
    window.engine_combo.setMinimumContentsLength(26)
    window.engine_combo.setSizeAdjustPolicy(
        QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
    )
    bar.addWidget(window.engine_combo)
    bar.addSeparator()
    window.run_button = _button(window.run_action, "Run ▶", primary=True)
    bar.addWidget(window.run_button)
    bar.addWidget(_button(window.cancel_action, "Cancel"))
    bar.addSeparator()
    bar.addWidget(_button(window.export_action, "Export picks"))
    bar.addSeparator()
    bar.addAction(window.settings_action)
    window.addToolBar(bar)


def _button(action: QAction, text: str, *, primary: bool = False) -> QPushButton:
    """A toolbar push button mirroring ``action`` (the theme styles push buttons)."""
    from PySide6.QtWidgets import QPushButton

    button = QPushButton(text)
    button.setToolTip(action.toolTip())
    button.setEnabled(action.isEnabled())
    button.clicked.connect(action.trigger)
    action.enabledChanged.connect(button.setEnabled)
    if primary:
        set_style_property(button, "primary", True)
    return button


def build_menus(window: MainWindow) -> None:
    menu = window.menuBar()
    file_menu = menu.addMenu("&File")
    for a in (
        window.open_action,
        window.open_folder_action,
        window.open_clip_action,
        window.paste_action,
    ):
        file_menu.addAction(a)
    file_menu.addSeparator()
    file_menu.addAction(window.sessions_action)
    file_menu.addSeparator()
    file_menu.addAction(window.export_action)
    file_menu.addAction(window.export_current_action)
    file_menu.addSeparator()
    file_menu.addAction(window.settings_action)
    file_menu.addSeparator()
    file_menu.addAction(window.quit_action)
    run_menu = menu.addMenu("&Run")
    for a in (
        window.run_action,
        window.cancel_action,
        window.rerun_action,
        window.next_action,
        window.prev_action,
    ):
        run_menu.addAction(a)
    engine_menu = menu.addMenu("&Engine")
    engine_menu.addAction(window.models_action)
    engine_menu.addAction(window.flux_models_action)
    engine_menu.addAction("Train LoRA…", window.open_train_window)  # paper 3.3
    pick_menu = menu.addMenu("&Pick")
    for a in window.pick_actions:
        pick_menu.addAction(a)
    pick_menu.addSeparator()  # fidelity (issue 5): the panel owns these actions
    pick_menu.addAction(window.candidates.suggest_action)
    pick_menu.addAction(window.candidates.accept_action)


def update_actions(window: MainWindow) -> None:
    has_cutouts = len(window.session.cutouts) > 0
    busy = window.session.jobs.is_busy()
    window.run_action.setEnabled(has_cutouts)
    window.cancel_action.setEnabled(busy)
    window.export_action.setEnabled(bool(window.session.candidates.all_picks()))
    window.export_current_action.setEnabled(
        window.current_cutout is not None
        and window.session.candidates.picked(window.current_cutout.id) is not None
    )
    window.rerun_action.setEnabled(bool(window.session.jobs.interrupted()))
    window.sessions_action.setEnabled(True)
    window.next_action.setEnabled(has_cutouts)
    window.prev_action.setEnabled(has_cutouts)
