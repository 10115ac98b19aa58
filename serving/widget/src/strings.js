// Every user-visible string of the widget, in one place. Add a language by adding a key.
export const STRINGS = {
  en: {
    title: "Ask the helpdesk",
    greeting: "Hi! Ask me anything about our policies, IT and facilities. Answers cite their sources.",
    placeholder: "Type your question…",
    send: "Send",
    open: "Open the helpdesk chat",
    close: "Close",
    newChat: "New conversation",
    copy: "Copy answer",
    copied: "Copied",
    helpful: "Helpful",
    notHelpful: "Not helpful",
    commentPrompt: "What was wrong? (optional)",
    sendFeedback: "Send feedback",
    thanks: "Thanks for the feedback.",
    sources: "Sources",
    source: "Source",
    page: "page",
    back: "Back to the conversation",
    thinking: "Searching the knowledge base…",
    unsupported: "Not found in the sources: check before relying on it.",
    declined: "The knowledge base has no answer to this.",
    suggested: "Try asking",
    errUnreachable: "Can't reach the knowledge service. Check your connection and try again.",
    errRateLimited: "Too many questions right now. Try again in {s} seconds.",
    errOrigin: "This widget is not allowed on this site. Ask your administrator to add it.",
    errIdentity: "Your sign-in could not be verified or has expired. Reload the page.",
    errNotReady: "The service is starting up. Try again in a few seconds.",
    errGeneric: "Something went wrong: {m}",
    errSourceGone: "This source is no longer available to you.",
    openOriginal: "Open the original",
    you: "You",
    assistant: "Helpdesk",
  },
  zh: {
    title: "咨询服务台",
    greeting: "您好！可以问我公司制度、IT 和行政方面的问题，回答会注明出处。",
    placeholder: "请输入您的问题…",
    send: "发送",
    open: "打开服务台对话",
    close: "关闭",
    newChat: "新对话",
    copy: "复制回答",
    copied: "已复制",
    helpful: "有帮助",
    notHelpful: "没有帮助",
    commentPrompt: "哪里不对？（可选）",
    sendFeedback: "提交反馈",
    thanks: "感谢您的反馈。",
    sources: "来源",
    source: "来源",
    page: "页",
    back: "返回对话",
    thinking: "正在检索知识库…",
    unsupported: "来源中找不到此内容，请核实后再使用。",
    declined: "知识库中没有这个问题的答案。",
    suggested: "试着问",
    errUnreachable: "无法连接知识服务。请检查网络后重试。",
    errRateLimited: "提问过于频繁，请 {s} 秒后再试。",
    errOrigin: "此网站未获准使用该小部件。请联系管理员添加。",
    errIdentity: "无法验证您的登录身份或登录已过期。请刷新页面。",
    errNotReady: "服务正在启动，请稍后几秒再试。",
    errGeneric: "出错了：{m}",
    errSourceGone: "您已无法查看此来源。",
    openOriginal: "打开原文",
    you: "您",
    assistant: "服务台",
  },
};

/** The strings for a language tag such as "zh-CN" or "en", English when unknown. */
export function stringsFor(lang) {
  const base = String(lang || "").toLowerCase().split("-")[0];
  return STRINGS[base] || STRINGS.en;
}

/** Fill `{name}` placeholders. */
export function fmt(template, values) {
  return template.replace(/\{(\w+)\}/g, (_, k) => (k in values ? String(values[k]) : ""));
}
