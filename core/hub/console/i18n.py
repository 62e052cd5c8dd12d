"""The console's words in Portuguese (the operators are Brazilian) and English; a missing word shows its key."""

from __future__ import annotations

from starlette.requests import Request

LANGS = ("pt", "en")
WORDS: dict[str, dict[str, str]] = {
    "title": {"pt": "hub · console", "en": "hub · console"},
    "login": {"pt": "Entrar", "en": "Sign in"},
    "logout": {"pt": "Sair", "en": "Sign out"},
    "email": {"pt": "E-mail", "en": "E-mail"},
    "password": {"pt": "Senha", "en": "Password"},
    "bad_login": {"pt": "E-mail ou senha incorretos.", "en": "Wrong e-mail or password."},
    "bad_csrf": {"pt": "O formulário expirou; recarregue a página e tente de novo.",
                 "en": "The form expired; reload the page and try again."},
    "tenants": {"pt": "Clientes", "en": "Tenants"},
    "connections": {"pt": "Autenticação", "en": "Connections"},
    "routes": {"pt": "Sincronizar dados", "en": "Routes"},
    "logs": {"pt": "Logs de API", "en": "API log"},
    "quarantine": {"pt": "Quarentena", "en": "Quarantine"},
    "failed": {"pt": "Operações com falha", "en": "Failed operations"},
    "mappings": {"pt": "DE-PARA", "en": "DE-PARA"},
    "runs": {"pt": "Histórico", "en": "Run history"},
    "platform": {"pt": "Plataforma", "en": "Platform"},
    "connection": {"pt": "Conexão", "en": "Connection"},
    "authorization": {"pt": "Autorização", "en": "Authorization"},
    "authorized": {"pt": "autorizada", "en": "authorized"},
    "needs_auth": {"pt": "reautorizar: {cmd}", "en": "re-authorize: {cmd}"},
    "paused": {"pt": "pausada", "en": "paused"},
    "active": {"pt": "ativa", "en": "active"},
    "token_expires": {"pt": "Token expira", "en": "Token expires"},
    "renew_by": {"pt": "Renovar autorização até", "en": "Renew authorization by"},
    "expires_soon": {"pt": "expira em breve", "en": "expires soon"},
    "expired": {"pt": "expirado", "en": "expired"},
    "pause": {"pt": "Pausar", "en": "Pause"},
    "resume": {"pt": "Retomar", "en": "Resume"},
    "state": {"pt": "Estado", "en": "State"},
    "route": {"pt": "Rota", "en": "Route"},
    "stream": {"pt": "Modelo", "en": "Stream"},
    "last_sync": {"pt": "Última sincronização", "en": "Last sync"},
    "records": {"pt": "Registros", "en": "Records"},
    "on_sink": {"pt": "No destino", "en": "On the sink"},
    "pending": {"pt": "Pendentes", "en": "Pending"},
    "failed_n": {"pt": "Com falha", "en": "Failed"},
    "next_run": {"pt": "Próxima execução", "en": "Next run"},
    "webhook_only": {"pt": "por webhook", "en": "on webhooks"},
    "run_now": {"pt": "Sincronizar agora", "en": "Run now"},
    "run_queued": {"pt": "Execução agendada para agora: {route}.", "en": "Run scheduled now: {route}."},
    "never": {"pt": "nunca", "en": "never"},
    "last_error": {"pt": "Último erro", "en": "Last error"},
    "started": {"pt": "Início", "en": "Started"},
    "trigger": {"pt": "Origem", "en": "Trigger"},
    "status": {"pt": "Status", "en": "Status"},
    "done": {"pt": "Concluídas", "en": "Done"},
    "api_calls": {"pt": "Chamadas", "en": "API calls"},
    "rate_limited": {"pt": "429", "en": "429"},
    "date": {"pt": "Data", "en": "Date"},
    "action": {"pt": "Ação", "en": "Action"},
    "check": {"pt": "Verificar", "en": "Check"},
    "model": {"pt": "Modelo", "en": "Model"},
    "error": {"pt": "Erro", "en": "Error"},
    "filter": {"pt": "Filtrar", "en": "Filter"},
    "all": {"pt": "todas", "en": "all"},
    "next_page": {"pt": "Próxima página", "en": "Next page"},
    "first_page": {"pt": "Primeira página", "en": "First page"},
    "nothing": {"pt": "Nada aqui.", "en": "Nothing here."},
    "record": {"pt": "Registro", "en": "Record"},
    "field": {"pt": "Campo", "en": "Field"},
    "reason": {"pt": "Motivo", "en": "Reason"},
    "fix": {"pt": "Como corrigir", "en": "Fix"},
    "retry": {"pt": "Tentar de novo", "en": "Retry"},
    "retry_all": {"pt": "Tentar de novo todas", "en": "Retry all"},
    "retried": {"pt": "{n} operações voltaram para a fila.", "en": "{n} operations are queued again."},
    "kind": {"pt": "Tipo", "en": "Kind"},
    "attempts": {"pt": "Tentativas", "en": "Attempts"},
    "table": {"pt": "Tabela", "en": "Table"},
    "source_value": {"pt": "Valor na origem", "en": "Source value"},
    "sink_value": {"pt": "Valor no destino", "en": "Sink value"},
    "sink_offers": {"pt": "O destino oferece", "en": "The sink offers"},
    "not_on_sink": {"pt": "não existe no destino", "en": "not on the sink"},
    "missing": {"pt": "sem DE-PARA", "en": "no entry"},
    "ok": {"pt": "ok", "en": "ok"},
    "save": {"pt": "Salvar", "en": "Save"},
    "saved": {"pt": "DE-PARA salvo. Tente de novo as operações com falha para reenviar.",
              "en": "DE-PARA saved. Retry the failed operations to send them again."},
    "mapping_note": {"pt": "Salvo no hub; aplicar o arquivo de rotas de novo (hub routes apply) substitui estes "
                           "valores.",
                     "en": "Saved in the hub; applying the route file again (hub routes apply) replaces these "
                           "values."},
    "problems": {"pt": "Problemas", "en": "Problems"},
    "times_in": {"pt": "Horários em {zone}", "en": "Times in {zone}"},
    "quarantined_n": {"pt": "Registros em quarentena: {n}", "en": "Quarantined records: {n}"},
    "paused_route": {"pt": "pausada (hub resume)", "en": "paused (hub resume)"},
}


def pick_lang(request: Request) -> str:
    """?lang= wins (and is remembered in a cookie), then the cookie, then Accept-Language; Portuguese by default."""
    asked = request.query_params.get("lang") or request.cookies.get("hub_lang")
    if asked in LANGS:
        return str(asked)
    header = request.headers.get("accept-language", "")
    for part in header.split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGS:
            return code
    return "pt"


def translate(lang: str, key: str, **values: object) -> str:
    text = WORDS.get(key, {}).get(lang) or WORDS.get(key, {}).get("en") or key
    return text.format(**values) if values else text
