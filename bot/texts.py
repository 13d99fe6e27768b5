"""The engine's own texts in English and Simplified Chinese (survey questions live in the survey script)."""

from __future__ import annotations

LANGUAGES = ("en", "zh")

TEXTS: dict[str, dict[str, str]] = {
    "yes": {"en": "Yes", "zh": "是"},
    "no": {"en": "No", "zh": "否"},
    "skip": {"en": "Skip", "zh": "跳过"},
    "something_else": {"en": "Something else", "zh": "其他"},
    "share_phone": {"en": "📞 Share my phone number", "zh": "📞 分享我的手机号"},
    "no_thanks": {"en": "No thanks", "zh": "不用了"},
    "switch_language": {"en": "中文", "zh": "English"},
    "help": {
        "en": "I collect feedback about your branch visit. Scan the QR code at the branch to start.\n"
        "/language – switch between English and Chinese\n/cancel – stop the current survey\n"
        "/mydata – see what we hold about you\n/forget – erase it",
        "zh": "我负责收集您对网点服务的意见。扫描网点的二维码即可开始。\n"
        "/language – 切换中英文\n/cancel – 结束当前问卷\n/mydata – 查看我们保存的您的信息\n/forget – 删除这些信息",
    },
    "choose_branch": {
        "en": "Which branch did you visit? (Scanning the QR code there takes you straight in.)",
        "zh": "请问您去的是哪个网点？（扫描网点的二维码可以直接开始。）",
    },
    "unknown_branch": {
        "en": "Sorry, I don't recognise that branch link. Please scan the QR code at the branch again.",
        "zh": "抱歉，无法识别这个网点链接。请重新扫描网点的二维码。",
    },
    "already_responded": {
        "en": "You've already shared feedback about this branch recently. Thank you — we're on it!",
        "zh": "您最近已经对这个网点提交过意见了，谢谢您！我们会认真处理。",
    },
    "in_progress": {
        "en": "You have a survey in progress; let's carry on where we left off. (/cancel stops it.)",
        "zh": "您有一份问卷尚未完成，我们从上次的地方继续。（发送 /cancel 可结束。）",
    },
    "no_survey": {
        "en": "There's no survey in progress. Scan the QR code at the branch to give feedback.",
        "zh": "当前没有进行中的问卷。扫描网点的二维码即可提交意见。",
    },
    "cancelled": {
        "en": "OK, I've stopped the survey. Thank you for your time.",
        "zh": "好的，问卷已结束。感谢您抽出时间。",
    },
    "language_set": {"en": "I'll speak English from now on.", "zh": "好的，之后我会用中文。"},
    "choose_language": {"en": "Which language do you prefer?", "zh": "您想使用哪种语言？"},
    "stale_button": {
        "en": "That button belongs to an earlier question. Here is the current one:",
        "zh": "这个按钮属于之前的问题。当前的问题是：",
    },
    "bad_button": {"en": "Sorry, I couldn't read that button.", "zh": "抱歉，无法识别这个按钮。"},
    "use_buttons": {
        "en": "Please choose one of the buttons.",
        "zh": "请点击下面的按钮选择。",
    },
    "rating_range": {
        "en": "Please answer with a number from {low} to {high}, or use the buttons.",
        "zh": "请回复 {low} 到 {high} 之间的数字，或点击按钮。",
    },
    "text_only": {
        "en": "I can only read text here — please type your answer.",
        "zh": "这里我只能读取文字，请直接输入您的回答。",
    },
    "empty_text": {
        "en": "That message looks empty. Could you tell me in a few words?",
        "zh": "您的消息似乎是空的，能用几句话告诉我吗？",
    },
    "truncated": {
        "en": "Your message was long, so I kept the first {limit} characters.",
        "zh": "您的消息较长，我保留了前 {limit} 个字。",
    },
    "edited": {
        "en": "I saw you edited a message. I keep the original; send a new message to add something.",
        "zh": "您编辑了一条消息。我会保留原来的内容；如需补充，请发送新消息。",
    },
    "bad_phone": {
        "en": "That doesn't look like a phone number. Please type it with digits, e.g. +86 138 0013 8000.",
        "zh": "这似乎不是电话号码。请用数字输入，例如 138 0013 8000。",
    },
    "foreign_contact": {
        "en": "Please share your own phone number, not someone else's.",
        "zh": "请分享您本人的手机号码。",
    },
    "flood": {
        "en": "You're sending messages very quickly. Please wait a moment and try again.",
        "zh": "您发送消息太快了，请稍等片刻再试。",
    },
    "no_data": {"en": "We hold no data about you.", "zh": "我们没有保存任何关于您的信息。"},
    "mydata_header": {
        "en": "What we hold about you (identified only by a one-way code, never your account name):",
        "zh": "我们保存的关于您的信息（仅以单向编码标识，不含您的账号名）：",
    },
    "mydata_consent": {"en": "Consent given: {date}; language: {lang}", "zh": "同意时间：{date}；语言：{lang}"},
    "mydata_conversation": {"en": "• {date} at {branch} ({status})", "zh": "• {date} {branch}（{status}）"},
    "mydata_reply": {
        "en": "   Staff may write to you in this chat about it (you agreed on {date}; /forget withdraws it).",
        "zh": "   工作人员可就此在本对话中给您发消息（您于 {date} 同意；发送 /forget 可撤回）。",
    },
    "status_active": {"en": "in progress", "zh": "进行中"},
    "status_completed": {"en": "completed", "zh": "已完成"},
    "status_cancelled": {"en": "stopped", "zh": "已结束"},
    "status_expired": {"en": "expired", "zh": "已过期"},
    "forget_confirm": {
        "en": "Erase everything we hold about you: your answers, comments and phone number, and your permission "
        "for staff to write to you here? Ratings stay in anonymous statistics. This cannot be undone.",
        "zh": "确定删除我们保存的您的全部信息（回答、意见、电话号码以及工作人员在此给您发消息的许可）吗？"
        "评分将仅保留在匿名统计中。此操作无法撤销。",
    },
    "forgotten": {"en": "Done: your data has been erased.", "zh": "已完成：您的信息已删除。"},
    "forget_kept": {"en": "OK, nothing was erased.", "zh": "好的，没有删除任何信息。"},
    "failure": {
        "en": "Sorry, something went wrong on our side. Please try again in a minute — your answers so far are safe.",
        "zh": "抱歉，系统出了点问题。请稍后再试，您之前的回答都已保存。",
    },
    "group_only_private": {
        "en": "I only take feedback in a private chat. Please message me directly.",
        "zh": "我只在私聊中收集意见，请直接私信我。",
    },
    "invite_accepted": {
        "en": "Welcome! You will receive the weekly digest for {scope} here in this chat.",
        "zh": "欢迎！您将在此对话中收到{scope}的每周简报。",
    },
    "invite_alerts_accepted": {
        "en": "Done! New-case alerts for {scope} will arrive here in this chat.",
        "zh": "设置完成！{scope}的新工单提醒将发送到此对话。",
    },
    "invite_digest_private_only": {
        "en": "A digest invite works in a private chat only: please open the link in a private chat with me. "
        "(Group chats can take case-alert invites.)",
        "zh": "简报邀请只能在私聊中使用，请在与我的私聊中打开此链接。（群聊可以使用工单提醒邀请。）",
    },
    "invite_invalid": {
        "en": "This invite link is not valid or was already used; ask for a new one.",
        "zh": "此邀请链接无效或已被使用，请重新申请一个。",
    },
    "invite_failure": {
        "en": "Sorry, something went wrong on our side. Please open the invite link again in a minute.",
        "zh": "抱歉，系统出了点问题。请稍后重新打开邀请链接。",
    },
    "scope_branch": {"en": "branch {value}", "zh": "网点「{value}」"},
    "scope_region": {"en": "region {value}", "zh": "区域「{value}」"},
    "scope_all": {"en": "the whole bank", "zh": "全行"},
}


def text(key: str, language: str, **values: object) -> str:
    """Return the text `key` in `language` (English when unknown), with `values` filled in."""
    variants = TEXTS[key]
    template = variants.get(language, variants["en"])
    return template.format(**values) if values else template


def pick_language(hint: str | None) -> str:
    """Map a client's language hint (zh-CN, zh-Hans, en-GB, "zh-CN,zh;q=0.9,en;q=0.8") onto en or zh."""
    if not hint:
        return "en"
    first = hint.split(",")[0].strip().lower()
    return "zh" if first.startswith("zh") else "en"
