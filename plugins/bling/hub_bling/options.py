"""A Bling connection's options, validated by ``hub routes validate``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

API_BASE = "https://api.bling.com.br/Api/v3"
AUTHORIZE_URL = "https://www.bling.com.br/Api/v3/oauth/authorize"
TIME_ZONE = "America/Sao_Paulo"


class BlingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(default=API_BASE, description="the API v3 root (a sandbox's address in tests)")
    authorize_url: str | None = Field(default=None, description="default: Bling's, or the sandbox's")
    timeout_seconds: float = Field(default=30, gt=0, description="seconds before a call counts as timed out")
    rate_per_second: float = Field(default=3, gt=0, description="the account's limit; the hub keeps 3% below it")
    daily_limit: int = Field(default=120_000, gt=0, description="requests per day in São Paulo time (Bling's plan)")
    page_size: int = Field(default=100, ge=1, le=100, description="records per list request (`limite`, at most 100)")
    overlap_minutes: int = Field(default=2, ge=1, description="incremental reads start this far before the cursor")
    loja_id: int | None = Field(default=None, description="Bling sales channel (loja) the sales are filed under")
    default_deposit: str | None = Field(default=None, description="depósito (id or name) for stock postings")
    nfe_poll_seconds: float = Field(default=60, gt=0, description="the longest wait between two reads of an NF-e "
                                    "awaiting SEFAZ (reads start 2 s apart and spread out as the wait goes on)")
    sales_history_days: int = Field(default=90, ge=1, le=360, description="a first sync of sales reads the orders "
                                    "changed in this many days (each order costs a detail call)")
    create_payment_methods: bool = Field(default=False, description="a sale's payment method that Bling lacks is "
                                         "found or created by the payment's name (Zydon's rule); off: the route's "
                                         "DE-PARA must name a Bling method")

    def authorize(self) -> str:
        if self.authorize_url:
            return self.authorize_url
        base = self.base_url.rstrip("/")
        return AUTHORIZE_URL if base == API_BASE else f"{base}/oauth/authorize"
