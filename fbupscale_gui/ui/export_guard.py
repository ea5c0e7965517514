"""The export's fidelity guard: ask (or refuse) before exporting picks below the operator's
LR-consistency threshold, or picks whose shirt number contradicts the scene (Settings:
"Export guard").

"ask" shows the picks below it with their scores and exports only after "Export anyway";
"refuse" says which picks block the export and exports nothing. The session enforces "refuse"
again on every export path (:meth:`fbupscale_gui.state.session.Session.export`), so this
dialog is the courtesy, not the lock.

Quitting asks too (:func:`confirm_quit`) while a job runs or picks were never exported, and can
export them first, through the same guard.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QMessageBox, QWidget

from fbupscale_gui.core.export import contradiction_text, low_fidelity_text

if TYPE_CHECKING:
    from fbupscale_gui.state.session import Session

__all__ = ["EXPORT_ANYWAY", "confirm_fidelity", "confirm_quit"]

log = logging.getLogger(__name__)

EXPORT_ANYWAY = "Export anyway"


def confirm_fidelity(
    parent: QWidget | None, session: Session, cutout_ids: Iterable[int] | None = None
) -> bool:
    """True if the export may go ahead: no pick below the LR-consistency threshold and none
    whose shirt number contradicts its scene, or the operator agreed to each question."""
    ids = None if cutout_ids is None else list(cutout_ids)
    return _confirm_numbers(parent, session, ids) and _confirm_scores(parent, session, ids)


def _confirm_numbers(parent: QWidget | None, session: Session, ids: list[int] | None) -> bool:
    wrong = session.contradicting_picks(ids)
    if not wrong:
        return True
    problem = f"{len(wrong)} pick(s) show a shirt number the scene contradicts"
    return _ask_or_refuse(
        parent,
        refuse=session.settings.settings.export_number_contradiction == "refuse",
        refused=f"Export refused: {problem}.",
        question=f"{problem}. Export anyway?",
        listing=contradiction_text(wrong),
        remedy="Pick a candidate marked ✓ (Suggest pick: S), or change the export guard in "
        "Settings.",
        detail=(
            "The number check reads the shirt numbers in each candidate and compares them with "
            "the numbers the scene marks fully visible. A contradicting candidate puts a wrong "
            "number on a player: the worst error to put on air."
        ),
        icon=QMessageBox.Icon.Warning,
    )


def _confirm_scores(parent: QWidget | None, session: Session, ids: list[int] | None) -> bool:
    low = session.low_fidelity_picks(ids)
    if not low:
        return True
    settings = session.settings.settings
    threshold = settings.export_min_lr_db
    return _ask_or_refuse(
        parent,
        refuse=settings.export_low_fidelity == "refuse",
        refused=(
            f"Export refused: {len(low)} pick(s) below the LR-consistency threshold of "
            f"{threshold:g} dB."
        ),
        question=(
            f"{len(low)} pick(s) are below the LR-consistency threshold of {threshold:g} dB. "
            "Export anyway?"
        ),
        listing=low_fidelity_text(low),
        remedy="Pick a more faithful candidate (Suggest pick: S), or change the export guard "
        "in Settings.",
        detail=(
            "LR-consistency: how well the candidate, shrunk back to the cutout's size, matches "
            "the cutout — higher is more faithful. A low score means the candidate contradicts "
            "what the camera recorded somewhere: check the compare view's heatmap (H)."
        ),
        icon=QMessageBox.Icon.Question,
    )


def _ask_or_refuse(
    parent: QWidget | None,
    *,
    refuse: bool,
    refused: str,
    question: str,
    listing: str,
    remedy: str,
    detail: str,
    icon: QMessageBox.Icon,
) -> bool:
    """Refuse (an OK box naming the picks and the remedy), or ask "Export anyway?"."""
    box = QMessageBox(parent)
    box.setWindowTitle("fbupscale — export guard")
    box.setDetailedText(detail)
    if refuse:
        box.setIcon(QMessageBox.Icon.Warning)
        box.setText(refused)
        box.setInformativeText(f"{listing}\n\n{remedy}")
        box.addButton(QMessageBox.StandardButton.Ok)
        box.exec()
        return False
    box.setIcon(icon)
    box.setText(question)
    box.setInformativeText(listing)
    anyway = box.addButton(EXPORT_ANYWAY, QMessageBox.ButtonRole.AcceptRole)
    cancel = box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(cancel)
    box.exec()
    return box.clickedButton() is anyway


def confirm_quit(parent: QWidget, session: Session) -> bool:
    """Ask before losing a running job or picks that were never exported."""
    from fbupscale_gui.core.errors import FbError

    unexported = len(session.unexported_picks())
    reasons = []
    if session.jobs.is_busy():
        reasons.append("a job is running and will be cancelled")
    if unexported:
        reasons.append(f"{unexported} picked candidate(s) have not been exported")
    if not reasons:
        return True
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Question)
    box.setWindowTitle("fbupscale")
    box.setText("Quit? " + "; ".join(reasons) + ".")
    box.setInformativeText(
        "Candidates and picks are kept in the session and come back when it is reopened "
        "(File ▸ Sessions…); exported files are what others can use."
        if session.session_path is not None
        else "Candidates live only in this window until they are exported."
    )
    export = (
        box.addButton("Export picks and quit", QMessageBox.ButtonRole.AcceptRole)
        if unexported
        else None
    )
    quit_button = box.addButton("Quit without exporting", QMessageBox.ButtonRole.DestructiveRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    clicked = box.clickedButton()
    if export is not None and clicked is export:
        if not confirm_fidelity(parent, session):
            return False
        try:
            session.export()
        except FbError as exc:
            log.error("export before quitting failed: %s", exc)
            QMessageBox.warning(parent, "fbupscale", f"Export failed, not quitting: {exc}")
            return False
        return True
    return clicked is quit_button
