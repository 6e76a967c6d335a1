"""HTML pages for Settings → Message templates: the library grouped by category, each
original followed by its A/B variants with their usage and answer rate; create, edit, make a
variant, delete. Seeing the list needs ``messages:read``; changing it ``templates:manage``.

Thin: the rules (placeholders checked against the lead and custom fields, variants, the Meta
mapping) live in ``messaging.templates``; the API's request models check lengths.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import groupby
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from lovedcrm.core.deps import SessionDep
from lovedcrm.core.errors import AppError, NotFound
from lovedcrm.messaging import templates
from lovedcrm.messaging.models import MessageTemplate
from lovedcrm.messaging.pages.forms import Gettext, complaints, too_long
from lovedcrm.messaging.template_schemas import TemplateIn
from lovedcrm.organizations.custom_fields import custom_field_definitions
from lovedcrm.web.i18n import N_
from lovedcrm.web.kit import (
    Member,
    PageError,
    Shell,
    attempt,
    page_router,
    parse_uuid,
    redirect,
    render,
)

router = page_router()
T = TypeVar("T")

PAGE = "/settings/templates"
READ = "messages:read"
MANAGE = "templates:manage"
CATEGORIES = ("greeting", "follow_up", "objection", "closing")
OTHER = "_other"
PREVIEW = 140

SERVICE_MESSAGES = (
    N_("No template with that id."),
    N_("parent_template_id is not a template of this organization."),
)


def _category_names(t: Gettext) -> dict[str, str]:
    return {
        "greeting": t("Greeting"),
        "follow_up": t("Follow-up"),
        "objection": t("Objection handling"),
        "closing": t("Closing"),
    }


def _placeholder(name: str) -> str:
    return "{{" + name + "}}"


def _letter(version: int | None) -> str:
    """A/B naming: version 1 is A, 2 is B…"""
    number = version or 1
    return chr(ord("A") + number - 1) if 1 <= number <= 26 else str(number)


# --- the form -------------------------------------------------------------------------------


@dataclass
class TemplateForm:
    """The form as typed (kept for redisplay after an error)."""

    name: str = ""
    category: str = "follow_up"
    category_other: str = ""
    content: str = ""
    is_active: bool = True
    is_shared: bool = False
    whatsapp_template_name: str = ""
    whatsapp_language: str = ""
    parent_template_id: str = ""

    @property
    def category_value(self) -> str:
        return self.category_other if self.category in ("", OTHER) else self.category

    def data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "category": self.category_value,
            "content": self.content,
            "is_active": self.is_active,
            "is_shared": self.is_shared,
            "whatsapp_template_name": self.whatsapp_template_name,
            "whatsapp_language": self.whatsapp_language,
        }

    @classmethod
    def of(cls, template: MessageTemplate) -> TemplateForm:
        # The page's category list holds every category in use, this one included.
        return cls(
            name=template.name,
            category=template.category,
            content=template.content,
            is_active=template.is_active is not False,
            is_shared=bool(template.is_shared),
            whatsapp_template_name=template.whatsapp_template_name or "",
            whatsapp_language=template.whatsapp_language or "",
        )


@dataclass
class FormState:
    """Which form the page shows: a new template, a variant of ``parent`` or ``editing``."""

    form: TemplateForm = field(default_factory=TemplateForm)
    editing: MessageTemplate | None = None
    parent: MessageTemplate | None = None
    errors: dict[str, str] = field(default_factory=dict)


# Form inputs of create and edit.
NameIn = Annotated[str, Form(max_length=1000)]
CategoryIn = Annotated[str, Form(max_length=1000)]
ContentIn = Annotated[str, Form(max_length=20000)]
FlagIn = Annotated[str | None, Form(max_length=10)]
MetaIn = Annotated[str, Form(max_length=1000)]


async def typed_form(
    name: NameIn = "",
    category: CategoryIn = "",
    category_other: CategoryIn = "",
    content: ContentIn = "",
    is_active: FlagIn = None,
    is_shared: FlagIn = None,
    whatsapp_template_name: MetaIn = "",
    whatsapp_language: MetaIn = "",
    parent_template_id: Annotated[str, Form(max_length=100)] = "",
) -> TemplateForm:
    """The form as posted (an unchecked box is not sent: off)."""
    return TemplateForm(
        name=name.strip(),
        category=category.strip(),
        category_other=category_other.strip(),
        content=content,
        is_active=is_active is not None,
        is_shared=is_shared is not None,
        whatsapp_template_name=whatsapp_template_name.strip(),
        whatsapp_language=whatsapp_language.strip(),
        parent_template_id=parent_template_id.strip(),
    )


TypedForm = Annotated[TemplateForm, Depends(typed_form)]


def _schema_errors(exc: ValidationError, t: Gettext) -> dict[str, str]:
    required = {
        "name": t("Give the template a name."),
        "category": t("Choose a category or write one."),
        "content": t("Write the message."),
    }
    errors: dict[str, str] = {}
    for name, kind, ctx in complaints(exc):
        if kind in ("missing", "string_too_short") and name in required:
            message = required[name]
        elif kind == "string_too_long":
            message = too_long(t, ctx)
        else:
            message = t("Check this value.")
        if name == "parent_template_id":
            name = "form"
        errors.setdefault(name, message)
    return errors


def _service_errors(exc: AppError, t: Gettext) -> dict[str, str]:
    mapping = {
        templates.MAP_BAD_NAME: t(
            "Use only lowercase letters, digits and _, exactly as the template is named "
            "in Meta's WhatsApp Manager."
        ),
        templates.MAP_BAD_LANGUAGE: t("Use a language code as Meta writes it: pt_BR, en_US, es."),
        templates.MAP_NEEDS_LANGUAGE: t(
            "Give the language the Meta template was approved in, such as pt_BR."
        ),
        templates.MAP_NEEDS_NAME: t("Give the name of the approved Meta template too."),
    }
    if exc.code == "unknown_variables":
        names = ", ".join(_placeholder(n) for n in exc.extra.get("unknown", []))
        return {
            "content": t(
                "Unknown variables: %(names)s. Use only the variables listed below the text."
            )
            % {"names": names}
        }
    if exc.code == "invalid_whatsapp_template":
        errors: dict[str, str] = {}
        for err in exc.extra.get("errors", []) or []:
            name, message = str(err.get("field", "")), str(err.get("message", ""))
            errors.setdefault(name, mapping.get(message, message))
        return errors
    return {"form": t(exc.detail)}


# --- the list -------------------------------------------------------------------------------


@dataclass
class Row:
    template: MessageTemplate
    letter: str
    is_variant: bool
    next_letter: str
    rate: int | None
    preview: str


@dataclass
class Group:
    category: str
    title: str
    rows: list[Row]


def _groups(rows: list[MessageTemplate], t: Gettext) -> list[Group]:
    """By category; in each, every original followed by its variants (the service's order)."""
    names = _category_names(t)
    family_top: dict[uuid.UUID, int] = {}
    for tpl in rows:
        root = tpl.parent_template_id or tpl.id
        family_top[root] = max(family_top.get(root, 1), tpl.version or 1)
    groups: list[Group] = []
    for category, items in groupby(rows, key=lambda tpl: tpl.category):
        view = []
        for tpl in items:
            content = tpl.content or ""
            view.append(
                Row(
                    template=tpl,
                    letter=_letter(tpl.version),
                    is_variant=tpl.parent_template_id is not None,
                    next_letter=_letter(family_top[tpl.parent_template_id or tpl.id] + 1),
                    rate=round((tpl.success_rate or 0) * 100) if tpl.usage_count else None,
                    preview=content if len(content) <= PREVIEW else content[:PREVIEW] + "…",
                )
            )
        groups.append(Group(category=category, title=names.get(category, category), rows=view))
    # The usual categories in the order of a sale, then the organization's own.
    order = {name: i for i, name in enumerate(CATEGORIES)}
    groups.sort(key=lambda g: (order.get(g.category, len(order)), g.category))
    return groups


def _variables_help(frame: Shell) -> tuple[list[str], list[str]]:
    """The placeholders a template may use: the lead's fields, then the custom fields."""
    lead = [_placeholder(name) for name in templates.LEAD_VARIABLES]
    custom = [_placeholder(d["key"]) for d in custom_field_definitions(frame.org)]
    return lead, custom


async def _page(
    request: Request,
    session: SessionDep,
    frame: Shell,
    *,
    state: FormState | None = None,
    page_error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    t = frame.i18n.gettext
    try:
        rows = await templates.list_templates(session, frame.principal)
    except AppError:
        return render(
            request,
            "messaging/settings_templates.html",
            403,
            **frame.context("settings"),
            tab="templates",
            denied=True,
            permission=READ,
        )
    lead_vars, custom_vars = _variables_help(frame)
    categories = list(CATEGORIES) + sorted(
        {r.category for r in rows if r.category not in CATEGORIES}
    )
    return render(
        request,
        "messaging/settings_templates.html",
        status_code,
        **frame.context("settings"),
        tab="templates",
        denied=False,
        groups=_groups(rows, t),
        count=len(rows),
        can_manage=frame.principal.can(MANAGE),
        state=state or FormState(),
        categories=categories,
        category_names=_category_names(t),
        other=OTHER,
        lead_vars=lead_vars,
        custom_vars=custom_vars,
        page_error=page_error,
        letter=_letter,
    )


def _back(text: str) -> Response:
    return redirect(PAGE, text)


async def manager(frame: Member) -> Shell:
    """A member who may change the templates, else the 403 page saying so."""
    if not frame.principal.can(MANAGE):
        raise PageError(
            403,
            "No access",
            "You do not have permission to change message templates.",
            back_url=PAGE,
            back_label="Message templates",
        )
    return frame


Manager = Annotated[Shell, Depends(manager)]


async def template_in_page(
    template_id: str, frame: Manager, session: SessionDep
) -> MessageTemplate:
    """The template in the URL, or the 404 page."""
    parsed = parse_uuid(template_id)
    if parsed is not None:
        with suppress(NotFound):
            return await templates.get_template(session, frame.principal, parsed)
    raise PageError(
        404,
        "Settings",  # the page's own heading, as when the page said it in an alert
        "No template with that id.",
        back_url=PAGE,
        back_label="Message templates",
    )


TemplateInPage = Annotated[MessageTemplate, Depends(template_in_page)]


async def _submit(
    request: Request,
    session: SessionDep,
    frame: Shell,
    state: FormState,
    data: dict[str, Any],
    save: Callable[[TemplateIn], Awaitable[T]],
    done: Callable[[T], str],
) -> Response:
    """Create or edit: ``data`` checked by the request model, then ``save``d by the service;
    errors show next to the inputs, with the form as typed."""
    t = frame.i18n.gettext
    try:
        body = TemplateIn.model_validate(data)
    except ValidationError as exc:
        state.errors = _schema_errors(exc, t)
        return await _page(request, session, frame, state=state, status_code=422)
    try:
        result = await attempt(session, save(body))
    except AppError as exc:
        state.errors = _service_errors(exc, t)
        return await _page(request, session, frame, state=state, status_code=exc.status)
    return _back(done(result))


# --- routes ---------------------------------------------------------------------------------


@router.get(PAGE, response_class=HTMLResponse)
async def templates_page(
    request: Request,
    session: SessionDep,
    frame: Member,
    edit: str | None = None,
    variant_of: str | None = None,
) -> Response:
    """The list; ``?edit=<id>`` opens a template in the form, ``?variant_of=<id>`` the form
    for a new A/B variant of it."""
    t = frame.i18n.gettext
    state = FormState()
    wanted = parse_uuid(edit or variant_of)
    if wanted is not None and frame.principal.can(MANAGE):
        try:
            chosen = await templates.get_template(session, frame.principal, wanted)
        except AppError as exc:
            return await _page(request, session, frame, page_error=t(exc.detail), status_code=404)
        form = TemplateForm.of(chosen)
        if edit:
            state = FormState(form=form, editing=chosen)
        else:
            root = chosen.parent_template_id or chosen.id
            form.parent_template_id = str(root)
            form.whatsapp_template_name = form.whatsapp_language = ""
            state = FormState(form=form, parent=chosen)
    return await _page(request, session, frame, state=state)


@router.post(PAGE, response_class=HTMLResponse)
async def template_create(
    request: Request, session: SessionDep, frame: Manager, form: TypedForm
) -> Response:
    t = frame.i18n.gettext
    state = FormState(form=form)
    parent_id = parse_uuid(form.parent_template_id)
    if parent_id is not None:
        with suppress(AppError):
            state.parent = await attempt(
                session, templates.get_template(session, frame.principal, parent_id)
            )

    def created(template: MessageTemplate) -> str:
        if template.parent_template_id is not None:
            text = t("Variant %(letter)s of the template created.")
            return text % {"letter": _letter(template.version)}
        return t("Template %(name)s created.") % {"name": template.name}

    return await _submit(
        request,
        session,
        frame,
        state,
        {**form.data(), "parent_template_id": form.parent_template_id or None},
        lambda body: templates.create_template(session, frame.principal, body.model_dump()),
        created,
    )


@router.post(PAGE + "/{template_id}", response_class=HTMLResponse)
async def template_update(
    request: Request,
    session: SessionDep,
    frame: Manager,
    template: TemplateInPage,
    form: TypedForm,
) -> Response:
    # Every input is sent, so the rules of a new template apply (an empty one is an error).
    return await _submit(
        request,
        session,
        frame,
        FormState(form=form, editing=template),
        form.data(),
        lambda body: templates.update_template(
            session, frame.principal, template.id, body.model_dump(exclude={"parent_template_id"})
        ),
        lambda _: frame.i18n.gettext("Template saved."),
    )


@router.post(PAGE + "/{template_id}/delete", response_class=HTMLResponse)
async def template_delete(
    request: Request, session: SessionDep, frame: Manager, template: TemplateInPage
) -> Response:
    t = frame.i18n
    try:
        await attempt(session, templates.delete_template(session, frame.principal, template.id))
    except AppError as exc:
        message = t.gettext(exc.detail)
        if exc.code == "template_has_variants":
            count = int(exc.extra.get("variant_count") or 0)
            message = t.ngettext(
                "This template has %(num)d variant: delete it first.",
                "This template has %(num)d variants: delete them first.",
                count,
            ) % {"num": count}
        return await _page(request, session, frame, page_error=message, status_code=exc.status)
    return _back(t.gettext("Template deleted."))
