"""Custom fields: the organization's extra lead fields (add, edit, move, remove). The
definitions' rules are ``organizations.custom_fields``' and ``organizations.service``'s."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, Response

from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import AppError
from lovedcrm.organizations import custom_fields
from lovedcrm.organizations import service as org_service
from lovedcrm.web.kit import Member, Shell, page_router, redirect, render

router = page_router()
PAGE = "/settings/custom-fields"
Translate = Callable[[str], str]


@dataclass
class FieldForm:
    """A custom field form as typed (kept for redisplay after an error)."""

    label: str = ""
    key: str = ""
    kind: str = "text"
    options: str = ""
    required: bool = False

    @property
    def option_list(self) -> list[str]:
        return [o.strip() for o in self.options.splitlines() if o.strip()]


def _type_names(t: Translate) -> dict[str, str]:
    return {
        "text": t("Text"),
        "number": t("Number"),
        "date": t("Date"),
        "select": t("List of options"),
        "checkbox": t("Yes or no"),
    }


def _definition_messages(t: Translate) -> dict[tuple[str, str], str]:
    """The settings validation's messages (``organizations.custom_fields``) in words for
    people."""
    return {
        ("key", custom_fields.DEF_BAD_KEY): t(
            "Use up to 50 letters without accents, digits or _ in the key, starting with a letter."
        ),
        ("key", custom_fields.DEF_KEY_TAKEN): t(
            "Another field already uses this key. Choose a different one."
        ),
        ("label", custom_fields.DEF_BAD_LABEL): t("Give the field a name of up to 100 characters."),
        ("type", custom_fields.DEF_BAD_TYPE): t("Choose one of the types in the list."),
        ("options", custom_fields.DEF_NO_OPTIONS): t(
            "A list of options needs at least one option (one per line, up to 100)."
        ),
        ("options", custom_fields.DEF_BAD_OPTIONS): t(
            "Write each option only once, with up to 100 characters."
        ),
        ("custom_fields", custom_fields.DEF_TOO_MANY): t(
            "An organization can have up to 50 custom fields."
        ),
    }


def _definition_errors(exc: AppError, index: int, t: Translate) -> dict[str, str]:
    """The service's errors for the field at ``index`` by form input; the rest as "form"."""
    words = _definition_messages(t)
    errors: dict[str, str] = {}
    for err in exc.extra.get("errors", []) or []:
        parts = str(err.get("field", "")).split(".")
        name = parts[-1]
        message = words.get((name, str(err.get("message", ""))))
        if parts[:2] == ["custom_fields", str(index)] and len(parts) == 3 and message:
            errors.setdefault(name, message)
        else:
            errors.setdefault("form", message or t(exc.detail))
    if not errors:
        errors["form"] = t(exc.detail)
    return errors


def _fields_page(
    request: Request,
    frame: Shell,
    *,
    forms: dict[str, FieldForm] | None = None,
    errors: dict[str, dict[str, str]] | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    return render(
        request,
        "organizations/settings_custom_fields.html",
        status_code,
        **frame.context("settings"),
        tab="custom_fields",
        definitions=custom_fields.custom_field_definitions(frame.org),
        type_names=_type_names(frame.i18n.gettext),
        types=custom_fields.CUSTOM_FIELD_TYPES,
        forms=forms or {},
        errors=errors or {},
        can_manage=frame.principal.can("settings:manage"),
    )


def _refused(request: Request, frame: Shell) -> HTMLResponse | None:
    """The read-only page with a 403 for someone without settings:manage, else None."""
    if frame.principal.can("settings:manage"):
        return None
    t = frame.i18n.gettext
    return _fields_page(
        request,
        frame,
        errors={"page": {"form": t("You do not have permission to change the custom fields.")}},
        status_code=403,
    )


def _unnamed(request: Request, frame: Shell, slot: str, form: FieldForm) -> HTMLResponse:
    """The form at ``slot`` ("new" or a key) shown again: a field needs a name."""
    message = frame.i18n.gettext("Give the field a name of up to 100 characters.")
    return _fields_page(
        request, frame, forms={slot: form}, errors={slot: {"label": message}}, status_code=422
    )


def _saved(text: str) -> Response:
    return redirect(PAGE, text)


@router.get(PAGE, response_class=HTMLResponse)
async def custom_fields_page(request: Request, frame: Member) -> Response:
    return _fields_page(request, frame)


@router.post(PAGE, response_class=HTMLResponse)
async def custom_field_add(
    request: Request,
    frame: Member,
    session: SessionDep,
    label: Annotated[str, Form(max_length=500)] = "",
    key: Annotated[str, Form(max_length=200)] = "",
    kind: Annotated[str, Form(alias="type", max_length=20)] = "text",
    options: Annotated[str, Form(max_length=20000)] = "",
    required: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    if (refused := _refused(request, frame)) is not None:
        return refused
    t = frame.i18n.gettext
    form = FieldForm(
        label=label.strip(),
        key=key.strip(),
        kind=kind,
        options=options,
        required=required is not None,
    )
    if not form.label:
        return _unnamed(request, frame, "new", form)
    index = len(custom_fields.custom_field_definitions(frame.org))
    try:
        added = await org_service.add_custom_field(
            session,
            frame.principal,
            label=form.label,
            key=form.key or None,
            kind=form.kind,
            options=form.option_list,
            required=form.required,
        )
    except AppError as exc:
        return _fields_page(
            request,
            frame,
            forms={"new": form},
            errors={"new": _definition_errors(exc, index, t)},
            status_code=exc.status,
        )
    return _saved(t("Field %(name)s added.") % {"name": added["label"]})


@router.post(PAGE + "/{key}", response_class=HTMLResponse)
async def custom_field_update(
    key: str,
    request: Request,
    frame: Member,
    session: SessionDep,
    label: Annotated[str, Form(max_length=500)] = "",
    options: Annotated[str, Form(max_length=20000)] = "",
    required: Annotated[str | None, Form(max_length=10)] = None,
) -> Response:
    if (refused := _refused(request, frame)) is not None:
        return refused
    t = frame.i18n.gettext
    form = FieldForm(label=label.strip(), key=key, options=options, required=required is not None)
    definitions = custom_fields.custom_field_definitions(frame.org)
    index = next((i for i, d in enumerate(definitions) if d["key"] == key), -1)
    if not form.label:
        return _unnamed(request, frame, key, form)
    try:
        await org_service.update_custom_field(
            session,
            frame.principal,
            key,
            label=form.label,
            options=form.option_list,
            required=form.required,
        )
    except AppError as exc:
        errors = _definition_errors(exc, index, t)
        if exc.status == 404:
            errors = {"form": t("This field no longer exists. Reload the page.")}
        return _fields_page(
            request, frame, forms={key: form}, errors={key: errors}, status_code=exc.status
        )
    return _saved(t("Field saved."))


@router.post(PAGE + "/{key}/move", response_class=HTMLResponse)
async def custom_field_move(
    key: str,
    request: Request,
    frame: Member,
    session: SessionDep,
    direction: Annotated[str, Form(max_length=10)] = "",
) -> Response:
    """Up or down one place (the order of the lead page and forms)."""
    if (refused := _refused(request, frame)) is not None:
        return refused
    t = frame.i18n.gettext
    try:
        await org_service.move_custom_field(
            session, frame.principal, key, "up" if direction == "up" else "down"
        )
    except AppError as exc:
        return _fields_page(
            request, frame, errors={key: _definition_errors(exc, -1, t)}, status_code=exc.status
        )
    return _saved(t("Order saved."))


@router.post(PAGE + "/{key}/delete", response_class=HTMLResponse)
async def custom_field_delete(
    key: str, request: Request, frame: Member, session: SessionDep
) -> Response:
    if (refused := _refused(request, frame)) is not None:
        return refused
    t = frame.i18n.gettext
    try:
        await org_service.remove_custom_field(session, frame.principal, key)
    except AppError as exc:
        return _fields_page(
            request, frame, errors={key: _definition_errors(exc, -1, t)}, status_code=exc.status
        )
    return _saved(t("Field removed. The values already saved in leads are kept."))
