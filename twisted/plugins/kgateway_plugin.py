from twisted.application.service import ServiceMaker

kgateway = ServiceMaker("kgateway", "kgateway.tap", "WebSocket gateway (Kaazing-style)", "kgateway")
