"""Synthetic but plausible Brazilian retail data: valid GTINs, CPFs and CNPJs, real NCMs, Portuguese names.

All randomness comes from the account's seeded generator, so a sandbox built with the same ``account_seed`` and
seeded in the same order holds the same data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hub.sandbox.documents import cnpj as cnpj_digits
from hub.sandbox.documents import cpf as cpf_digits
from hub.sandbox.documents import ean13
from hub.sandbox.documents import wrong_check_digit as break_check_digit

from .catalog import insert_product
from .common import STAMP, money
from .orders import build_sale, insert_sale
from .parties import insert_contact
from .state import Meta, SaleMeta, State


@dataclass(frozen=True)
class Kind:
    noun: str
    prefix: str
    ncm: str
    cest: str
    prices: tuple[float, float]
    category: str
    styles: tuple[str, ...]
    materials: tuple[str, ...]
    sizes: tuple[str, ...] = ()


KINDS = (
    Kind("Camiseta", "CAM", "61091000", "2806300", (29.9, 89.9), "Camisetas", ("Básica", "Estampada", "Gola V", "Polo"),
         ("Algodão", "Dry Fit", "Malha Penteada"), ("P", "M", "G", "GG")),
    Kind("Calça", "CAL", "62034200", "", (79.9, 199.9), "Calças", ("Jeans Slim", "Sarja", "Jogger", "Reta"),
         ("Azul Escuro", "Preta", "Cáqui"), ("38", "40", "42", "44")),
    Kind("Tênis", "TEN", "64041100", "2806500", (129.9, 399.9), "Tênis", ("Esportivo", "Casual", "Corrida"),
         ("Couro", "Mesh", "Lona"), ("37", "38", "39", "40", "41")),
    Kind("Mochila", "MOC", "42029200", "", (89.9, 259.9), "Mochilas", ("Escolar", "Executiva", "Trilha"),
         ("Reforçada", "Impermeável", "com Porta-Notebook")),
    Kind("Caneca", "CAN", "69120000", "", (19.9, 49.9), "Canecas", ("Cerâmica", "Esmaltada", "Térmica"),
         ("300ml", "350ml", "450ml")),
    Kind("Garrafa Térmica", "GAR", "96170010", "", (49.9, 149.9), "Garrafas", ("Inox", "Pressão", "Esportiva"),
         ("500ml", "750ml", "1 Litro")),
    Kind("Fone de Ouvido", "FON", "85183000", "2106200", (59.9, 349.9), "Fones", ("Bluetooth", "Intra-auricular",
                                                                               "Over-ear"), ("Preto", "Branco")),
    Kind("Carregador USB", "CAR", "85044010", "2106700", (39.9, 129.9), "Carregadores", ("Turbo", "Veicular",
                                                                                       "Portátil"), ("20W", "33W")),
    Kind("Luminária", "LUM", "94052000", "", (69.9, 229.9), "Luminárias", ("de Mesa", "Articulada", "Pendente"),
         ("LED", "Bivolt")),
    Kind("Café Torrado", "CAF", "09012100", "1709600", (18.9, 54.9), "Cafés", ("Tradicional", "Extraforte",
                                                                            "Gourmet"), ("250g", "500g")),
    Kind("Sabonete Líquido", "SAB", "34013000", "2002900", (9.9, 29.9), "Sabonetes", ("Hidratante", "Antibacteriano"),
         ("250ml", "500ml")),
    Kind("Vestido", "VES", "62044200", "", (99.9, 279.9), "Vestidos", ("Midi", "Longo", "Tubinho"),
         ("Viscose", "Linho", "Crepe"), ("P", "M", "G")),
)
COLORS = ("Azul", "Preto", "Branco", "Vermelho", "Verde", "Cinza")
BRANDS = ("Casa Nativa", "Urbano", "Brisa", "Tropical", "Ipê", "Serra Azul")
TREE = (
    ("Vestuário", ("Camisetas", "Calças", "Vestidos")), ("Calçados", ("Tênis", "Sandálias")),
    ("Acessórios", ("Mochilas", "Bonés")), ("Casa e Cozinha", ("Canecas", "Garrafas", "Luminárias")),
    ("Eletrônicos", ("Fones", "Carregadores")), ("Mercearia", ("Cafés",)), ("Higiene e Beleza", ("Sabonetes",)),
)
FIRST = ("Ana", "Bruno", "Carla", "Diego", "Eduarda", "Felipe", "Gabriela", "Henrique", "Isabela", "João",
         "Larissa", "Marcos", "Natália", "Otávio", "Patrícia", "Rafael", "Sabrina", "Thiago", "Vanessa", "Wagner",
         "Luíza", "Antônio", "Fernanda", "Gustavo", "Conceição", "Sebastião")
LAST = ("Silva", "Santos", "Oliveira", "Souza", "Rodrigues", "Ferreira", "Alves", "Pereira", "Lima", "Gomes",
        "Costa", "Ribeiro", "Martins", "Carvalho", "Araújo", "Melo", "Barbosa", "Cardoso", "Teixeira",
        "Nascimento", "Magalhães", "Brandão")
COMPANIES = ("Mercadinho São Jorge", "Papelaria Estrela", "Ótica Visão Clara", "Padaria Pão de Ouro",
             "Distribuidora Boa Esperança", "Farmácia Saúde & Vida", "Açougue Dois Irmãos", "Confecções Maré Alta",
             "Livraria Cantinho do Saber", "Auto Peças Paraná")
CITIES = (
    ("São Paulo", "SP", "01310", ("Bela Vista", "Pinheiros", "Moema", "Tatuapé")),
    ("Rio de Janeiro", "RJ", "20040", ("Centro", "Tijuca", "Botafogo")),
    ("Belo Horizonte", "MG", "30130", ("Savassi", "Funcionários", "Lourdes")),
    ("Porto Alegre", "RS", "90010", ("Centro Histórico", "Moinhos de Vento")),
    ("Curitiba", "PR", "80010", ("Batel", "Água Verde")),
    ("Salvador", "BA", "40020", ("Barra", "Pituba")),
    ("Recife", "PE", "50030", ("Boa Viagem", "Casa Forte")),
    ("Goiânia", "GO", "74003", ("Setor Bueno", "Setor Marista")),
    ("Florianópolis", "SC", "88010", ("Trindade", "Centro")),
    ("Campinas", "SP", "13010", ("Cambuí", "Taquaral")),
)
STREETS = ("Rua das Flores", "Avenida Paulista", "Rua XV de Novembro", "Rua Sete de Setembro", "Avenida Brasil",
           "Rua Dom Pedro II", "Travessa São João", "Rua Tiradentes", "Avenida Getúlio Vargas",
           "Rua Marechal Deodoro")
PAYMENT_METHODS = (("Dinheiro", 1), ("Cartão de Crédito", 3), ("Cartão de Débito", 4), ("Boleto", 15), ("PIX", 17),
                   ("Cheque", 2), ("Vale Alimentação", 10), ("Vale Refeição", 11), ("Transferência bancária", 18),
                   ("PIX estático", 20), ("Crédito Loja", 5), ("Outros", 99))
SELLER_NAMES = ("Juliana Prado", "Roberto Nogueira", "Camila Duarte", "Sérgio Albuquerque", "Tatiane Moraes")


def format_cpf(doc: str) -> str:
    return f"{doc[:3]}.{doc[3:6]}.{doc[6:9]}-{doc[9:]}"


def format_cnpj(doc: str) -> str:
    return f"{doc[:2]}.{doc[2:5]}.{doc[5:8]}/{doc[8:12]}-{doc[12:]}"




def _past(st: State, max_days: float) -> datetime:
    return st.clock.now() - timedelta(seconds=st.rng.uniform(0, max_days * 86400))


def _between(st: State, start: datetime) -> datetime:
    return start + (st.clock.now() - start) * st.rng.random()


def _price(st: State, low: float, high: float) -> float:
    return money(int(st.rng.uniform(low, high)) + 0.9)


# --- catalog ------------------------------------------------------------------------------------------


def categories(st: State, count: int) -> list[str]:
    existing = {c["descricao"]: cid for cid, c in st.categories.items()}
    plan: list[tuple[str, str | None]] = [(root, None) for root, _ in TREE]
    plan += [(child, root) for root, children in TREE for child in children]
    ids: list[str] = []
    n = 0
    while len(ids) < count:
        if n < len(plan):
            name, parent = plan[n]
        else:
            name, parent = f"{st.rng.choice(('Linha', 'Coleção', 'Outlet'))} {n - len(plan) + 1}", TREE[n % 7][0]
        n += 1
        if name in existing:
            continue
        parent_id = existing.get(parent, 0) if parent else 0
        cid = st.new_id()
        st.categories[cid] = {"id": cid, "descricao": name, "categoriaPai": {"id": parent_id}}
        existing[name] = cid
        ids.append(str(cid))
    st.changed()
    return ids


def _category_for(st: State, kind: Kind) -> int:
    for cid, c in st.categories.items():
        if c["descricao"] == kind.category:
            return cid
    return 0


def _base_product(st: State, kind: Kind, code: str, gtin: str, price: float) -> dict[str, Any]:
    name = f"{kind.noun} {st.rng.choice(kind.styles)} {st.rng.choice(kind.materials)}"
    images = [{"link": f"https://cdn.lojamodelo.com.br/produtos/{code.lower()}-{k}.jpg"}
              for k in range(1, st.rng.randint(1, 3) + 1)]
    weight = round(st.rng.uniform(0.1, 1.5), 3)
    return {
        "nome": name, "codigo": code, "preco": price, "tipo": "P", "situacao": "I" if st.rng.random() < 0.08 else "A",
        "formato": "S", "descricaoCurta": f"{name}. Produto {st.rng.choice(BRANDS)} com garantia de fábrica.",
        "unidade": "UN", "pesoLiquido": weight, "pesoBruto": round(weight * 1.1, 3), "gtin": gtin,
        "marca": st.rng.choice(BRANDS), "categoria": {"id": _category_for(st, kind)},
        "estoque": {"minimo": 2.0, "maximo": 200.0, "crossdocking": 0, "localizacao": f"A{st.rng.randint(1, 30)}"},
        "dimensoes": {"largura": 20.0, "altura": 10.0, "profundidade": 5.0, "unidadeMedida": 1},
        "tributacao": {"origem": st.rng.choice((0, 0, 0, 0, 0, 0, 1, 2)), "ncm": kind.ncm, "cest": kind.cest,
                       "spedTipoItem": "00", "percentualTributos": 31.45},
        "midia": {"video": {"url": ""}, "imagens": {"imagensURL": images}},
    }


def _gtin(st: State) -> str:
    st.serial += 1
    return ean13(f"789{st.seed % 1000:03d}{st.serial:06d}")


def _set_stock(st: State, pid: int, zero: bool) -> None:
    if zero:
        st.balances[pid] = {d: 0.0 for d in st.deposits}
        return
    geral, loja = st.default_deposit, next((d for d in st.deposits if d != st.default_deposit), None)
    st.balances[pid] = {geral: float(st.rng.randint(1, 120))}
    if loja is not None:
        st.balances[pid][loja] = float(st.rng.randint(0, 25))


def products(st: State, count: int, *, invalid_gtin: bool = False) -> list[str]:
    """``count`` products; about one in five has 2-4 variations, a third have no stock, most were included long
    ago (so the default ``criterio`` hides them)."""
    if not st.categories:
        categories(st, 21)
    ids: list[str] = []
    for _ in range(count):
        kind = st.rng.choice(KINDS)
        st.serial += 1
        index = st.serial
        code = f"{kind.prefix}-{index:05d}"
        gtin = _gtin(st)
        if invalid_gtin:
            gtin = break_check_digit(gtin)
        record = _base_product(st, kind, code, gtin, _price(st, *kind.prices))
        created = _past(st, 730)
        stamp, changed = created.strftime(STAMP), _between(st, created).strftime(STAMP)
        cost = money(record["preco"] * 0.45)
        zero = index % 3 == 0 and not invalid_gtin
        with_variations = kind.sizes and st.rng.random() < 0.2 and not invalid_gtin
        if not with_variations:
            pid = insert_product(st, record, created=stamp, changed=changed, cost=cost)
            _set_stock(st, pid, zero)
            ids.append(str(pid))
            continue
        record["formato"] = "V"
        pid = insert_product(st, record, created=stamp, changed=changed, cost=cost)
        combos = [(c, s) for c in st.rng.sample(COLORS, 2) for s in kind.sizes]
        for order, (color, size) in enumerate(st.rng.sample(combos, min(len(combos), st.rng.randint(2, 4))), 1):
            variation = dict(record, nome=f"{record['nome']} {color} {size}",
                             codigo=f"{code}-{color[:2].upper()}{size}", gtin=_gtin(st), formato="S")
            label = {"nome": f"Cor:{color};Tamanho:{size}", "ordem": order, "produtoPai": {"id": pid,
                                                                                        "cloneInfo": True}}
            vid = insert_product(st, variation, created=stamp, changed=changed, parent=pid, variation=label,
                                 cost=cost)
            _set_stock(st, vid, zero)
        ids.append(str(pid))
    st.changed()
    return ids


def stock(st: State, count: int) -> list[str]:
    """Positive balances in both depósitos for ``count`` existing stock-holding products (made if missing)."""
    holders = [pid for pid, meta in st.pmeta.items() if not meta.children]
    if len(holders) < count:
        products(st, count - len(holders))
        holders = [pid for pid, meta in st.pmeta.items() if not meta.children]
    chosen = st.rng.sample(holders, count)
    for pid in chosen:
        _set_stock(st, pid, zero=False)
    st.changed()
    return [str(pid) for pid in chosen]


# --- parties ------------------------------------------------------------------------------------------


def _address(st: State) -> dict[str, str]:
    city, uf, cep5, districts = st.rng.choice(CITIES)
    return {"endereco": st.rng.choice(STREETS), "cep": f"{cep5}-{st.rng.randint(0, 999):03d}",
            "bairro": st.rng.choice(districts), "municipio": city, "uf": uf, "numero": str(st.rng.randint(1, 3000)),
            "complemento": st.rng.choice(("", "", "Apto 12", "Sala 3", "Fundos"))}


def person_document(st: State) -> str:
    return cpf_digits(f"{st.rng.randrange(10**8, 10**9):09d}")


def company_document(st: State) -> str:
    return cnpj_digits(f"{st.rng.randrange(10**7, 10**8):08d}0001")


def contact_record(st: State, *, company: bool | None = None, invalid_document: bool = False) -> dict[str, Any]:
    company = st.rng.random() < 0.25 if company is None else company
    st.serial += 1
    address = _address(st)
    ddd = {"SP": "11", "RJ": "21", "MG": "31", "RS": "51", "PR": "41", "BA": "71", "PE": "81", "GO": "62",
           "SC": "48"}[address["uf"]]
    if company:
        doc = company_document(st)
        name = f"{st.rng.choice(COMPANIES)} {st.rng.choice(('Ltda', 'ME', 'EIRELI'))}"
    else:
        doc = person_document(st)
        name = f"{st.rng.choice(FIRST)} {st.rng.choice(LAST)} {st.rng.choice(LAST)}"
    if invalid_document:
        doc = break_check_digit(doc)
    slug = name.split()[0].lower().translate(str.maketrans("áéíóúâêôãõçà", "aeiouaeoaoca"))
    return {
        "nome": name, "codigo": f"C{st.serial:05d}", "situacao": "A",
        "numeroDocumento": format_cnpj(doc) if company else format_cpf(doc),
        "telefone": f"({ddd}) 3{st.rng.randint(100, 999)}-{st.rng.randint(1000, 9999)}",
        "celular": f"({ddd}) 9{st.rng.randint(8000, 9999)}-{st.rng.randint(1000, 9999)}",
        "fantasia": name.rsplit(" ", 1)[0] if company else "", "tipo": "J" if company else "F",
        "indicadorIe": 1 if company else 9, "ie": f"{st.rng.randrange(10**11, 10**12)}" if company else "",
        "email": f"{slug}{st.serial}@exemplo.com.br", "endereco": {"geral": address, "cobranca": dict(address)},
        "pais": {"nome": "Brasil"}, "tiposContato": [{"id": st.module_id * 10 + 1, "descricao": "Cliente"}],
        "dadosAdicionais": {"dataNascimento": "", "sexo": "", "naturalidade": "Brasileira" if not company else ""},
    }


def customers(st: State, count: int, *, invalid_document: bool = False) -> list[str]:
    ids = []
    for _ in range(count):
        created = _past(st, 730)
        record = contact_record(st, company=False if invalid_document else None, invalid_document=invalid_document)
        ids.append(str(insert_contact(st, record, created=created.strftime(STAMP),
                                      changed=_between(st, created).strftime(STAMP))))
    return ids


def sellers(st: State, count: int) -> list[str]:
    ids = []
    for i in range(count):
        record = contact_record(st, company=False)
        record["nome"] = SELLER_NAMES[(len(st.sellers) + i) % len(SELLER_NAMES)]
        record["tiposContato"] = [{"id": st.module_id * 10 + 5, "descricao": "Vendedor"}]
        created = _past(st, 900)
        stamp, changed = created.strftime(STAMP), _between(st, created).strftime(STAMP)
        contact = insert_contact(st, record, created=stamp, changed=changed)
        sid = st.new_id()
        st.sellers[sid] = {"id": sid, "descontoLimite": float(st.rng.choice((5, 10, 15))), "loja": {"id": 0},
                           "contato": {"id": contact},
                           "comissoes": [{"descontoMaximo": 10.0, "aliquota": float(st.rng.choice((1, 2, 3)))}]}
        st.smeta[sid] = Meta(stamp, changed)
        ids.append(str(sid))
    st.changed()
    return ids


def payment_methods(st: State, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        n = len(st.payment_methods)
        name, kind = PAYMENT_METHODS[n % len(PAYMENT_METHODS)]
        if n >= len(PAYMENT_METHODS):
            name = f"{name} {n // len(PAYMENT_METHODS) + 1}x"
        card = kind in (3, 4)
        mid = st.new_id()
        st.payment_methods[mid] = {
            "id": mid, "descricao": name, "tipoPagamento": kind, "situacao": 1, "fixa": False,
            "padrao": 1 if kind == 1 and n == 0 else 0, "finalidade": 3, "juros": 0.0, "multa": 0.0,
            "condicao": "30 60 90" if kind == 15 else "1x", "destino": 1, "utilizaDiasUteis": False,
            "taxas": {"aliquota": 2.99 if card else 0.0, "valor": 0.0, "prazo": 30 if kind == 3 else 0},
            "dadosCartao": {"bandeira": 1 if card else 99, "tipo": 2 if card else 1,
                            "cnpjCredenciadora": "01027058000191" if card else "", "autoLiquidacao": 0},
        }
        ids.append(str(mid))
    st.changed()
    return ids


# --- sales --------------------------------------------------------------------------------------------


def sales(st: State, count: int) -> list[str]:
    """Orders over the last 60 days from existing products, customers, sellers and payment methods (a few of each
    are made first if the account has none)."""
    sellable = [pid for pid, meta in st.pmeta.items() if not meta.children]
    if not sellable:
        products(st, 10)
        sellable = [pid for pid, meta in st.pmeta.items() if not meta.children]
    buyers = [cid for cid in st.contacts if cid != st.final_consumer and st.contacts[cid]["tipo"] in "FJ"]
    if not buyers:
        buyers = [int(c) for c in customers(st, 5)]
    if not st.payment_methods:
        payment_methods(st, 5)
    methods = list(st.payment_methods)
    sellers_ids = list(st.sellers)
    weights = (("Em aberto", 50), ("Atendido", 35), ("Em andamento", 10), ("Cancelado", 5))
    ids = []
    for _ in range(count):
        day = _past(st, 60)
        items = []
        for pid in st.rng.sample(sellable, min(len(sellable), st.rng.randint(1, 3))):
            p = st.products[pid]
            items.append({"produto": {"id": pid}, "codigo": p["codigo"], "descricao": p["nome"],
                          "quantidade": float(st.rng.randint(1, 3)), "valor": p["preco"], "valorLista": p["preco"],
                          "unidade": p["unidade"]})
        total = money(sum(i["quantidade"] * i["valor"] for i in items))
        method = st.rng.choice(methods)
        installments = 3 if st.payment_methods[method]["tipoPagamento"] == 3 and total > 150 else 1
        share = money(total / installments)
        parcelas = [{"dataVencimento": (day + timedelta(days=30 * k)).strftime("%Y-%m-%d"),
                     "valor": share if k < installments - 1 else money(total - share * (installments - 1)),
                     "formaPagamento": {"id": method}} for k in range(installments)]
        contact = st.final_consumer if st.rng.random() < 0.15 else st.rng.choice(buyers)
        address = st.contacts[contact]["endereco"]["geral"]
        st.serial += 1
        body = {"data": day.strftime("%Y-%m-%d"), "dataSaida": day.strftime("%Y-%m-%d"),
                "dataPrevista": (day + timedelta(days=5)).strftime("%Y-%m-%d"), "contato": {"id": contact},
                "numeroLoja": f"LJ-{st.seed}{st.serial:06d}" if st.rng.random() < 0.6 else "",
                "loja": {"id": st.module_id * 3 + 7 if st.rng.random() < 0.6 else 0},
                "itens": items, "parcelas": parcelas,
                "vendedor": {"id": st.rng.choice(sellers_ids) if sellers_ids and st.rng.random() < 0.5 else 0},
                "observacoes": st.rng.choice(("", "", "Entregar no período da tarde", "Cliente retira na loja")),
                "transporte": {"fretePorConta": 0, "etiqueta": {"nome": st.contacts[contact]["nome"],
                                                                **{k: address[k] for k in
                                                                   ("endereco", "numero", "complemento", "municipio",
                                                                    "uf", "cep", "bairro")}, "nomePais": "BRASIL"}}}
        situacao = st.rng.choices([st.situacao_by_name(n)["id"] for n, _ in weights], [w for _, w in weights])[0]
        sale = build_sale(st, body, st.new_id(), st.next_numero, situacao)
        changed = _between(st, day).strftime(STAMP)
        ids.append(str(insert_sale(st, sale, SaleMeta(day.strftime(STAMP), changed))))
    return ids
