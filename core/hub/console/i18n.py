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
    # routes: bounded counts and run now per stream
    "counts_capped": {"pt": "contagens param em {cap} (\"+\": há mais)", "en": "counts stop at {cap} (\"+\": more)"},
    "exact_counts": {"pt": "contar exatamente", "en": "count exactly"},
    "counts_exact": {"pt": "contagens exatas", "en": "exact counts"},
    "stream_queued": {"pt": "Execução agendada para agora: {route} (a rota roda com seus outros modelos).",
                      "en": "Run scheduled now: {route} (the route runs with its other streams)."},
    "run_stream_title": {"pt": "Marca a rota para rodar agora (como um webhook deste modelo)",
                         "en": "Marks the route due now (as a webhook for this stream does)"},
    # connections: authorizing in the browser
    "authorize_now": {"pt": "Autorizar no {platform}", "en": "Authorize at {platform}"},
    "authorize_again": {"pt": "Autorizar de novo no {platform}", "en": "Authorize again at {platform}"},
    "how_to_authorize": {"pt": "Como autorizar", "en": "How to authorize"},
    "auth_by_credentials": {
        "pt": "Esta plataforma não tem página de consentimento: autoriza com as credenciais do arquivo de rotas "
              "({creds}; chaves de API, usuário e senha ou refresh token). Ajuste-as, aplique com hub routes apply "
              "ARQUIVO e rode: {cmd}",
        "en": "This platform has no consent page: it authorizes with the route file's credentials ({creds}; API "
              "keys, a user and password, or a refresh token). Set them, apply with hub routes apply FILE, then "
              "run: {cmd}"},
    "callback_note": {
        "pt": "A plataforma devolve a autorização a {url}; onde o aplicativo tem um link de redirecionamento "
              "cadastrado (Bling), cadastre este endereço.",
        "en": "The platform sends the authorization back to {url}; where the app has a registered redirect link "
              "(Bling), register this address."},
    "auth_done": {"pt": "Conexão {route} autorizada; {n} operações em espera retomadas.",
                  "en": "Connection {route} authorized; {n} waiting operations resume."},
    "auth_sign_in_first": {"pt": "Entre na console antes de concluir a autorização.",
                           "en": "Sign in to the console before completing the authorization."},
    "auth_start_again": {"pt": "Comece de novo pelo botão da página Autenticação.",
                         "en": "Start again with the button on the Connections page."},
    "auth_bad_state": {"pt": "Este retorno de autorização não é válido (expirado ou alterado).",
                       "en": "This authorization callback is not valid (expired or altered)."},
    "auth_other_session": {"pt": "Esta autorização foi iniciada em outra sessão.",
                           "en": "This authorization was started in another session."},
    "auth_state_used": {"pt": "Este retorno de autorização já foi usado.",
                        "en": "This authorization callback was already used."},
    "auth_platform_refused": {"pt": "A plataforma recusou a autorização:",
                              "en": "The platform refused the authorization:"},
    "auth_no_code": {"pt": "A plataforma voltou sem código de autorização.",
                     "en": "The platform came back without an authorization code."},
    # DE-PARA: the route file
    "file_diff": {"pt": "Hub × arquivo de rotas", "en": "Hub vs the route file"},
    "route_file": {"pt": "Arquivo de rotas", "en": "Route file"},
    "in_hub": {"pt": "No hub", "en": "In the hub"},
    "in_file": {"pt": "No arquivo", "en": "In the file"},
    "only_in_hub": {"pt": "só no hub", "en": "only in the hub"},
    "only_in_file": {"pt": "só no arquivo", "en": "only in the file"},
    "differs": {"pt": "diferente", "en": "differs"},
    "same_as_file": {"pt": "O hub e o arquivo de rotas têm os mesmos valores.",
                     "en": "The hub and the route file have the same values."},
    "write_file": {"pt": "Gravar os valores do hub no arquivo de rotas",
                   "en": "Write the hub's values to the route file"},
    "file_written": {"pt": "{n} entradas gravadas no arquivo de rotas {route}.",
                     "en": "{n} entries written to the route file {route}."},
    "mapping_note_file": {
        "pt": "Salvo no hub. Grave também no arquivo de rotas ({path}), senão o próximo hub routes apply volta aos "
              "valores dele.",
        "en": "Saved in the hub. Write it to the route file too ({path}), or the next hub routes apply brings back "
              "the file's values."},
    "file_unknown": {
        "pt": "O hub não sabe de que arquivo esta rota foi aplicada (aplique-a de novo com hub routes apply ARQUIVO "
              "para que a console possa gravá-lo).",
        "en": "The hub does not know which file this route was applied from (apply it again with hub routes apply "
              "FILE so the console can write it)."},
    "file_not_writable": {
        "pt": "O arquivo de rotas {path} não pode ser gravado daqui: {why}.",
        "en": "The route file {path} cannot be written from here: {why}."},
    "only_in_file_note": {
        "pt": "Entradas só no arquivo ainda não foram aplicadas (hub routes apply); gravar não as apaga.",
        "en": "Entries only in the file are not applied yet (hub routes apply); writing does not remove them."},
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
